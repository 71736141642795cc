package ingest

import (
	"bytes"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NewHandler serves the Segment-compatible tracking API on w:
// POST /v1/identify, /v1/track, /v1/page, /v1/screen, /v1/group,
// /v1/alias and /v1/batch (and /v1/import, its alias).
// An empty writeKey accepts any key (development and demo only).
func NewHandler(writeKey string, w *Writer, log *slog.Logger, now func() time.Time) http.Handler {
	h := &handler{writeKey: writeKey, w: w, log: log, now: now}
	mux := http.NewServeMux()
	for _, k := range []string{KindIdentify, KindTrack, KindPage, KindScreen, KindGroup, KindAlias} {
		kind := k
		mux.HandleFunc("POST /v1/"+kind, func(rw http.ResponseWriter, r *http.Request) { h.serve(rw, r, kind) })
	}
	mux.HandleFunc("POST /v1/batch", func(rw http.ResponseWriter, r *http.Request) { h.serve(rw, r, "batch") })
	mux.HandleFunc("POST /v1/import", func(rw http.ResponseWriter, r *http.Request) { h.serve(rw, r, "batch") })
	return mux
}

type handler struct {
	writeKey string
	w        *Writer
	log      *slog.Logger
	now      func() time.Time
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

type response struct {
	Success  bool          `json:"success"`
	Error    string        `json:"error,omitempty"`
	Field    string        `json:"field,omitempty"`
	Accepted *int          `json:"accepted,omitempty"`
	Rejected []*FieldError `json:"rejected,omitempty"`
}

func reply(rw http.ResponseWriter, status int, body response) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(body)
}

func (h *handler) serve(rw http.ResponseWriter, r *http.Request, kind string) {
	received := h.now()
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)

	var body io.Reader = r.Body
	gz := strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip")
	if gz {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			reply(rw, http.StatusBadRequest, response{Error: "body is not valid gzip", Field: "Content-Encoding"})
			return
		}
		defer zr.Close()
		body = zr
	}
	limit := int64(MaxBatchBytes)
	if kind != "batch" {
		limit = MaxEventBytes
	}
	n, err := buf.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		if gz {
			reply(rw, http.StatusBadRequest, response{Error: "body is not valid gzip: " + err.Error(), Field: "Content-Encoding"})
		} else {
			reply(rw, http.StatusBadRequest, response{Error: "reading the body: " + err.Error()})
		}
		return
	}
	if n > limit {
		reply(rw, http.StatusRequestEntityTooLarge, response{Error: "body is over the limit of " + sizeText(limit), Field: "body"})
		return
	}
	data := buf.Bytes()

	if kind == "batch" {
		h.serveBatch(rw, r, data, received)
		return
	}
	if !h.authorized(r, data) {
		unauthorized(rw)
		return
	}
	m, err := Parse(data, kind, -1, received, time.Time{})
	if err != nil {
		var fe *FieldError
		errors.As(err, &fe)
		reply(rw, http.StatusBadRequest, response{Error: fe.Msg, Field: fe.Field})
		return
	}
	refused, err := h.w.Write(r.Context(), []Message{m})
	if err != nil {
		h.unavailable(rw, err)
		return
	}
	if len(refused) > 0 {
		reply(rw, http.StatusBadRequest, response{Error: refused[0].Msg, Field: refused[0].Field})
		return
	}
	reply(rw, http.StatusOK, response{Success: true})
}

func (h *handler) serveBatch(rw http.ResponseWriter, r *http.Request, data []byte, received time.Time) {
	env := envPool.Get().(*envelope)
	defer func() {
		clear(env.raws) // drop the references into the body
		*env = envelope{entries: env.entries[:0], raws: env.raws[:0], objects: env.objects[:0]}
		envPool.Put(env)
	}()
	if bad := decodeEnvelope(data, env); bad != nil {
		reply(rw, http.StatusBadRequest, *bad)
		return
	}
	if !h.keyOK(r, env.writeKey) {
		unauthorized(rw)
		return
	}
	msgs, at, rejected, bad := parseEntries(env, received)
	if bad != nil {
		reply(rw, http.StatusBadRequest, *bad)
		return
	}
	refused, err := h.w.Write(r.Context(), msgs)
	if err != nil {
		h.unavailable(rw, err)
		return
	}
	for _, fe := range refused {
		i := at[fe.Index]
		rejected = append(rejected, &FieldError{Index: i, Field: "batch[" + itoa(i) + "]" + dotted(fe.Field), Msg: fe.Msg})
	}
	if len(refused) > 0 {
		slices.SortFunc(rejected, func(a, b *FieldError) int { return a.Index - b.Index })
	}
	if len(rejected) > 0 {
		accepted := len(msgs) - len(refused)
		reply(rw, http.StatusBadRequest, response{Error: itoa(len(rejected)) + " entries rejected, " + itoa(accepted) + " stored", Accepted: &accepted, Rejected: rejected})
		return
	}
	reply(rw, http.StatusOK, response{Success: true})
}

// decodeEnvelope decodes a /v1/batch body into env, or says why it cannot.
func decodeEnvelope(data []byte, env *envelope) *response {
	switch scanEnvelope(data, env) {
	case scanTooDeep:
		field := "body"
		if env.deepAt >= 0 {
			field = "batch[" + itoa(env.deepAt) + "]"
		}
		return &response{Error: depthError(), Field: field}
	case scanInvalid:
		// Not valid JSON, or not the expected shape: encoding/json says
		// what is wrong and where.
		var std struct {
			Batch    []json.RawMessage `json:"batch"`
			SentAt   json.RawMessage   `json:"sentAt"`
			WriteKey string            `json:"writeKey"`
			Context  json.RawMessage   `json:"context"`
		}
		if err := json.Unmarshal(data, &std); err != nil {
			return &response{Error: "malformed JSON: " + jsonProblem(err), Field: "body"}
		}
		*env = envelope{entries: std.Batch, hasBatch: std.Batch != nil, sentAt: std.SentAt, writeKey: std.WriteKey, context: std.Context}
	}
	return nil
}

// parseEntries validates the entries of a decoded batch: the good ones
// come back as messages (at: the entry each is), the others as
// rejections; a problem with the batch as a whole comes back as bad.
func parseEntries(env *envelope, received time.Time) (msgs []Message, at []int, rejected []*FieldError, bad *response) {
	if !env.hasBatch {
		return nil, nil, nil, &response{Error: "missing: the body needs a batch array", Field: "batch"}
	}
	// The batch's context goes with each entry that has none.
	var batchContext json.RawMessage
	if env.contextBig {
		field := "context"
		if p := numberPath(env.context); p != "" {
			field += "." + p
		}
		return nil, nil, nil, &response{Error: numberProblem(), Field: field}
	}
	if c, err := object(env.context); err != nil {
		return nil, nil, nil, &response{Error: err.Error(), Field: "context"}
	} else if len(c) > 2 {
		batchContext = c
	}
	var sentAt time.Time
	if s, err := str(env.sentAt); err != nil {
		return nil, nil, nil, &response{Error: err.Error(), Field: "sentAt"}
	} else if s != "" {
		if sentAt, err = ParseTime(s); err != nil {
			return nil, nil, nil, &response{Error: err.Error(), Field: "sentAt"}
		}
	}
	msgs = make([]Message, 0, len(env.entries))
	at = make([]int, 0, len(env.entries))
	for i, e := range env.entries {
		var fields *raw
		if i < len(env.objects) && env.objects[i] {
			fields = &env.raws[i]
		}
		m, err := parse(e, fields, "", i, received, sentAt)
		if err != nil {
			var fe *FieldError
			errors.As(err, &fe)
			fe.Field = "batch[" + itoa(i) + "]" + dotted(fe.Field)
			rejected = append(rejected, fe)
			continue
		}
		if m.Context == nil {
			m.Context = batchContext
		}
		msgs = append(msgs, m)
		at = append(at, i)
	}
	return msgs, at, rejected, nil
}

var envPool = sync.Pool{New: func() any { return new(envelope) }}

func (h *handler) unavailable(rw http.ResponseWriter, err error) {
	if errors.Is(err, ErrUnavailable) {
		rw.Header().Set("Retry-After", "1")
		reply(rw, http.StatusServiceUnavailable, response{Error: "storage is unavailable; nothing was stored, retry"})
		return
	}
	// The client went away before the messages were handed over.
	reply(rw, http.StatusServiceUnavailable, response{Error: "request cancelled; nothing was stored, retry"})
}

// authorized checks the write key: HTTP Basic username, or writeKey in the
// body of a single call.
func (h *handler) authorized(r *http.Request, body []byte) bool {
	if h.writeKey == "" {
		return true
	}
	if u, _, ok := r.BasicAuth(); ok {
		return h.keyOK(r, u)
	}
	var k struct {
		WriteKey string `json:"writeKey"`
	}
	_ = json.Unmarshal(body, &k)
	return h.keyOK(r, k.WriteKey)
}

func (h *handler) keyOK(r *http.Request, bodyKey string) bool {
	if h.writeKey == "" {
		return true
	}
	key := bodyKey
	if u, _, ok := r.BasicAuth(); ok {
		key = u
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(h.writeKey)) == 1
}

func unauthorized(rw http.ResponseWriter) {
	rw.Header().Set("WWW-Authenticate", `Basic realm="waymark"`)
	reply(rw, http.StatusUnauthorized, response{Error: "missing or wrong write key (send it as the HTTP Basic username)", Field: "writeKey"})
}

func dotted(field string) string {
	if field == "" {
		return ""
	}
	return "." + field
}

func sizeText(n int64) string { return itoa(int(n>>10)) + " KB" }
func itoa(i int) string       { return strconv.Itoa(i) }
