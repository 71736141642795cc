package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/waymark/waymark/internal/store"
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
		eps = []store.WebhookEndpoint{}
	}
	writeJSON(w, http.StatusOK, page[store.WebhookEndpoint]{Items: eps})
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
	out := page[store.WebhookDelivery]{Items: ds}
	if out.Items == nil {
		out.Items = []store.WebhookDelivery{}
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
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such webhook in the journey", Field: "name"})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery": id, "webhook_id": "msg_" + strconv.FormatInt(id, 10)})
}
