package tracking

// The suppression API and the bounce webhook: a management API key adds
// addresses that are never sent to.

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/waymark/waymark/internal/ingest"
)

type apiResponse struct {
	Success    bool   `json:"success"`
	Error      string `json:"error,omitempty"`
	Field      string `json:"field,omitempty"`
	Suppressed *bool  `json:"suppressed,omitempty"`
}

func reply(w http.ResponseWriter, status int, body apiResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// authorized checks the management API key of a /v1/ request.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	var key string
	if scheme, k, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Bearer") {
		key = strings.TrimSpace(k)
	} else if u, p, ok := r.BasicAuth(); ok {
		key = p
		if key == "" {
			key = u
		}
	}
	refuse := func(code int, msg string) bool {
		if code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="waymark"`)
		}
		reply(w, code, apiResponse{Error: msg, Field: "Authorization"})
		return false
	}
	const how = "send a management API key (waymark keys create --name NAME) as Authorization: Bearer KEY"
	switch {
	case key == "":
		return refuse(http.StatusUnauthorized, "missing API key: "+how)
	case h.opts.WriteKey != "" && constantTimeEqual(key, h.opts.WriteKey):
		return refuse(http.StatusUnauthorized, "the ingestion write key cannot suppress addresses: "+how)
	}
	known, readOnly, err := h.store.CheckAPIKey(r.Context(), key)
	switch {
	case err != nil:
		h.opts.Log.Error("checking an API key", "err", err)
		return refuse(http.StatusServiceUnavailable, "storage unavailable, retry later")
	case !known:
		return refuse(http.StatusUnauthorized, "invalid or revoked API key: "+how)
	case readOnly:
		return refuse(http.StatusForbidden, "this API key is read-only")
	}
	return true
}

// decode reads a JSON object into v, refusing unknown fields; the error
// response names the field at fault.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, apiResponse{Error: "body is over the limit of 64 KB", Field: "body"})
		return false
	}
	return decodeBytes(w, body, v)
}

func decodeBytes(w http.ResponseWriter, body []byte, v any) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		field, msg := jsonProblem(err)
		reply(w, http.StatusBadRequest, apiResponse{Error: msg, Field: field})
		return false
	}
	if dec.More() {
		reply(w, http.StatusBadRequest, apiResponse{Error: "one JSON object is expected, found more after it", Field: "body"})
		return false
	}
	return true
}

// jsonProblem names the field a decoding error is about ("body" when it
// is not about one) and says what is wrong.
func jsonProblem(err error) (field, msg string) {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return te.Field, fmt.Sprintf("must be a %s, not %s", te.Type.Kind(), te.Value)
	case errors.As(err, &te):
		return "body", fmt.Sprintf("must be a JSON object, not %s", te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field"
	case errors.Is(err, io.EOF):
		return "body", "empty body: a JSON object is needed"
	}
	return "body", "malformed JSON: " + err.Error()
}

// SuppressionRequest is the body of POST /v1/suppressions. Reason is
// "manual" (the default), "complaint" or "hard_bounce".
type SuppressionRequest struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

func (h *Handler) suppressions(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	var req SuppressionRequest
	if !decode(w, r, &req) {
		return
	}
	email, err := ingest.NormalizeEmail(req.Email)
	if err != nil {
		reply(w, http.StatusBadRequest, apiResponse{Error: err.Error(), Field: "email"})
		return
	}
	if req.Reason == "" {
		req.Reason = "manual"
	}
	if !apiReasons[req.Reason] {
		reply(w, http.StatusBadRequest, apiResponse{Error: fmt.Sprintf("%q is not a reason: use manual, complaint or hard_bounce", req.Reason), Field: "reason"})
		return
	}
	if len(req.Detail) > 1000 {
		reply(w, http.StatusBadRequest, apiResponse{Error: "longer than 1000 bytes", Field: "detail"})
		return
	}
	if strings.ContainsRune(req.Detail, 0) {
		reply(w, http.StatusBadRequest, apiResponse{Error: "contains a NUL character", Field: "detail"})
		return
	}
	h.suppress(w, r, email, req.Reason, req.Detail)
}

func (h *Handler) suppress(w http.ResponseWriter, r *http.Request, email, reason, detail string) {
	n, err := h.store.Suppress(r.Context(), email, reason, detail)
	if err != nil {
		h.opts.Log.Error("suppressing an address", "reason", reason, "err", err)
		reply(w, http.StatusServiceUnavailable, apiResponse{Error: "storage unavailable, retry later"})
		return
	}
	h.opts.Log.Info("suppressed", "reason", reason, "cancelled_sends", n)
	yes := true
	reply(w, http.StatusOK, apiResponse{Success: true, Suppressed: &yes})
}

// BounceWebhook is one event of POST /v1/webhooks/bounces: Type "bounce"
// (with BounceType "hard" or "soft") or "complaint". A hard bounce
// suppresses the address as hard_bounce, a complaint as complaint; a soft
// bounce is only logged. The body is one such object, or an array of up
// to MaxBounceBatch of them.
type BounceWebhook struct {
	Type       string `json:"type"`
	Email      string `json:"email"`
	BounceType string `json:"bounce_type"`
	Diagnostic string `json:"diagnostic"`
	// Optional, for delivery reports (when the handler has Reports): the
	// report's id (the same id is recorded once), the Message-ID of the
	// email it is about (ties it to the send), and when it happened.
	ID        string     `json:"id"`
	MessageID string     `json:"message_id"`
	Timestamp *time.Time `json:"timestamp"`
}

// MaxBounceBatch is the most events one webhook call may carry.
const MaxBounceBatch = 500

// check validates b and returns the address and the suppression reason
// ("" for a soft bounce), or the field at fault and what is wrong.
func (b *BounceWebhook) check() (email, reason, field, problem string) {
	if b.Type != "bounce" && b.Type != "complaint" && b.Type != "delivery" {
		return "", "", "type", fmt.Sprintf("%q is not a type: use bounce, complaint or delivery", b.Type)
	}
	email, err := ingest.NormalizeEmail(b.Email)
	if err != nil {
		return "", "", "email", err.Error()
	}
	if strings.ContainsRune(b.Diagnostic, 0) {
		return "", "", "diagnostic", "contains a NUL character"
	}
	b.Diagnostic = truncate(b.Diagnostic, 1000)
	if len(b.ID) > 200 {
		return "", "", "id", "longer than 200 bytes"
	}
	if len(b.MessageID) > 1000 {
		return "", "", "message_id", "longer than 1000 bytes"
	}
	if b.Type == "delivery" {
		if b.BounceType != "" {
			return "", "", "bounce_type", "only for type bounce"
		}
		return email, "", "", ""
	}
	if b.Type == "complaint" {
		if b.BounceType != "" {
			return "", "", "bounce_type", "only for type bounce"
		}
		return email, "complaint", "", ""
	}
	switch b.BounceType {
	case "hard":
		return email, "hard_bounce", "", ""
	case "soft":
		return email, "", "", ""
	}
	return "", "", "bounce_type", fmt.Sprintf("%q is not a bounce type: use hard or soft", b.BounceType)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// bounceResult is a rejected event of a batch.
type bounceResult struct {
	Index int    `json:"index"`
	Field string `json:"field"`
	Error string `json:"error"`
}

func (h *Handler) bounces(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 512<<10))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, apiResponse{Error: "body is over the limit of 512 KB", Field: "body"})
		return
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		var b BounceWebhook
		if !decodeBytes(w, body, &b) {
			return
		}
		email, reason, field, problem := b.check()
		switch {
		case field != "":
			reply(w, http.StatusBadRequest, apiResponse{Error: problem, Field: field})
		case h.opts.Reports != nil:
			suppressed, err := h.opts.Reports(r.Context(), b, email)
			if err != nil {
				h.opts.Log.Error("recording a delivery report", "err", err)
				reply(w, http.StatusServiceUnavailable, apiResponse{Error: "storage unavailable, retry later"})
				return
			}
			reply(w, http.StatusOK, apiResponse{Success: true, Suppressed: &suppressed})
		case reason == "":
			h.opts.Log.Info("soft bounce", "email", email, "diagnostic", b.Diagnostic)
			no := false
			reply(w, http.StatusOK, apiResponse{Success: true, Suppressed: &no})
		default:
			h.suppress(w, r, email, reason, b.Diagnostic)
		}
		return
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		reply(w, http.StatusBadRequest, apiResponse{Error: "malformed JSON: " + err.Error(), Field: "body"})
		return
	}
	if len(raw) > MaxBounceBatch {
		reply(w, http.StatusBadRequest, apiResponse{Error: fmt.Sprintf("%d events: at most %d in one call", len(raw), MaxBounceBatch), Field: "body"})
		return
	}
	// Good entries are applied even when others are refused.
	var (
		rejected   []bounceResult
		suppressed int
		cancelled  int
	)
	for i, m := range raw {
		var b BounceWebhook
		dec := json.NewDecoder(bytes.NewReader(m))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			field, msg := jsonProblem(err)
			rejected = append(rejected, bounceResult{Index: i, Field: fmt.Sprintf("[%d].%s", i, field), Error: msg})
			continue
		}
		email, reason, field, problem := b.check()
		switch {
		case field != "":
			rejected = append(rejected, bounceResult{Index: i, Field: fmt.Sprintf("[%d].%s", i, field), Error: problem})
			continue
		case h.opts.Reports != nil:
			yes, err := h.opts.Reports(r.Context(), b, email)
			if err != nil {
				h.opts.Log.Error("recording a delivery report", "err", err)
				reply(w, http.StatusServiceUnavailable, apiResponse{Error: fmt.Sprintf("storage unavailable at event %d, retry later", i)})
				return
			}
			if yes {
				suppressed++
			}
			continue
		case reason == "":
			h.opts.Log.Info("soft bounce", "email", email, "diagnostic", b.Diagnostic)
			continue
		}
		n, err := h.store.Suppress(r.Context(), email, reason, b.Diagnostic)
		if err != nil {
			// What went before is stored; the sender retries the call,
			// and suppressing again changes nothing.
			h.opts.Log.Error("suppressing an address", "reason", reason, "err", err)
			reply(w, http.StatusServiceUnavailable, apiResponse{Error: fmt.Sprintf("storage unavailable at event %d, retry later", i)})
			return
		}
		suppressed++
		cancelled += n
	}
	h.opts.Log.Info("bounce webhook", "events", len(raw), "suppressed", suppressed, "rejected", len(rejected), "cancelled_sends", cancelled)
	status := http.StatusOK
	if len(rejected) > 0 {
		status = http.StatusBadRequest
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"success": len(rejected) == 0, "accepted": len(raw) - len(rejected),
		"suppressed": suppressed, "rejected": rejected})
}

// constantTimeEqual compares two secrets in constant time.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
