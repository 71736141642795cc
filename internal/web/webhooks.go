package web

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/waymark/waymark/internal/webhook"
)

// apiWebhooks lists the journey's webhook endpoints with their delivery
// figures: pending, delivered, failed, the last error, and whether the
// endpoint is failing (since when) or disabled.
func (s *Server) apiWebhooks(w http.ResponseWriter, r *http.Request) {
	eps, err := s.st.WebhookEndpoints(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if eps == nil {
		eps = []webhook.EndpointStatus{}
	}
	writeJSON(w, http.StatusOK, page[webhook.EndpointStatus]{Items: eps})
}

// apiWebhookDeliveries is an endpoint's delivery log, newest first:
// status, attempts, the last HTTP status and error, latency (?before=ID
// pages on).
func (s *Server) apiWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, "limit", "%v", err)
		return
	}
	var before int64
	if v := r.URL.Query().Get("before"); v != "" {
		if before, err = strconv.ParseInt(v, 10, 64); err != nil || before <= 0 {
			fieldError(w, http.StatusBadRequest, "before", "before: must be a delivery id, not %q", v)
			return
		}
	}
	ds, err := s.st.WebhookDeliveries(r.Context(), r.PathValue("name"), before, limit)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := page[webhook.LogEntry]{Items: ds}
	if out.Items == nil {
		out.Items = []webhook.LogEntry{}
	}
	if len(ds) == limit {
		out.Next = "/api/v1/webhooks/" + r.PathValue("name") + "/deliveries?limit=" + strconv.Itoa(limit) + "&before=" + strconv.FormatInt(ds[len(ds)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiWebhookTest queues a webhook.test delivery to the endpoint (and
// enables it again if a day of failures had disabled it).
func (s *Server) apiWebhookTest(w http.ResponseWriter, r *http.Request) {
	id, err := s.st.QueueWebhookTest(r.Context(), r.PathValue("name"), s.now())
	if errors.Is(err, webhook.ErrNoEndpoint) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such webhook in the journey", Field: "name"})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery": id, "webhook_id": "msg_" + strconv.FormatInt(id, 10)})
}

// webhookRow is a delivery in the dashboard's list, with its endpoint.
type webhookRow struct {
	webhook.LogEntry
	Endpoint string
}

// webhooksPage shows each endpoint (healthy, failing since, disabled; its
// figures and last error; "send test event") and the latest deliveries.
func (s *Server) webhooksPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	eps, err := s.st.WebhookEndpoints(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var rows []webhookRow
	for _, e := range eps {
		ds, err := s.st.WebhookDeliveries(r.Context(), e.Name, 0, 20)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		for _, d := range ds {
			rows = append(rows, webhookRow{d, e.Name})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID > rows[j].ID })
	s.render(w, r, http.StatusOK, "webhooks", view{Title: "Webhooks", Nav: "webhooks", Took: time.Since(start).Round(time.Microsecond).String(),
		Data: map[string]any{"Endpoints": eps, "Deliveries": rows}})
}

// webhookTestAction is the "send test event" button.
func (s *Server) webhookTestAction(w http.ResponseWriter, r *http.Request) {
	if _, err := s.st.QueueWebhookTest(r.Context(), r.PathValue("name"), s.now()); err != nil {
		if errors.Is(err, webhook.ErrNoEndpoint) {
			s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no such webhook"})
			return
		}
		s.failed(w, r, err)
		return
	}
	http.Redirect(w, r, "/dashboard/webhooks", http.StatusSeeOther)
}
