package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/waymark/waymark/internal/auth"
	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/internal/ingest"
	"github.com/waymark/waymark/internal/journey"
)

type ctxKey int

const keyCtx ctxKey = 1

// apiKeyOf returns the key a request was authenticated with.
func apiKeyOf(ctx context.Context) auth.APIKey {
	k, _ := ctx.Value(keyCtx).(auth.APIKey)
	return k
}

// api wraps an API handler: bearer key (401), rate limit per key (429
// with Retry-After), read-only keys only read (403), body limit (413).
func (s *Server) api(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		scheme, key, _ := strings.Cut(header, " ")
		if !strings.EqualFold(scheme, "Bearer") || key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="waymark"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing API key: send Authorization: Bearer KEY (waymark keys create --name NAME)", Field: "Authorization"})
			return
		}
		k, err := s.st.Authenticate(r.Context(), strings.TrimSpace(key))
		if errors.Is(err, auth.ErrBadKey) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="waymark", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "invalid or revoked API key", Field: "Authorization"})
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if ok, wait := s.limiter.allow(k.ID); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			writeJSON(w, http.StatusTooManyRequests, apiError{Error: "rate limit exceeded for this key; retry after the Retry-After seconds"})
			return
		}
		if k.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeJSON(w, http.StatusForbidden, apiError{Error: "this API key is read-only"})
			return
		}
		if r.ContentLength > s.cfg.MaxBody {
			fieldError(w, http.StatusRequestEntityTooLarge, "", "request body over %d bytes", s.cfg.MaxBody)
			return
		}
		if f := badParam(r); f != "" {
			fieldError(w, http.StatusBadRequest, f, "%s: not valid text (invalid UTF-8 or a NUL character)", f)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
		h(w, r.WithContext(context.WithValue(r.Context(), keyCtx, k)))
	})
}

func (s *Server) routesAPI() {
	h := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.api(fn)) }
	h("GET /api/v1/contacts", s.apiContacts)
	h("GET /api/v1/contacts/export", s.apiExportContacts)
	h("GET /api/v1/contacts/{id}", s.apiContact)
	h("GET /api/v1/contacts/{id}/timeline", s.apiTimeline)
	h("GET /api/v1/contacts/{id}/export", s.apiExport)
	h("DELETE /api/v1/contacts/{id}", s.apiErase)
	h("GET /api/v1/rules", s.apiRules)
	h("GET /api/v1/rules/{name}", s.apiRule)
	h("PUT /api/v1/rules/{name}", s.apiSaveRule)
	h("POST /api/v1/rules/{name}/dry-run", s.apiDryRun)
	h("POST /api/v1/compile", s.apiCompile)
	h("GET /api/v1/tones", s.apiTones)
	h("GET /api/v1/templates", s.apiTemplates)
	h("GET /api/v1/templates/{name}", s.apiTemplate)
	h("GET /api/v1/templates/{name}/preview", s.apiPreview)
	h("GET /api/v1/sequences", s.apiSequences)
	h("GET /api/v1/offers", s.apiOffers)
	h("GET /api/v1/suppressions", s.apiSuppressions)
	h("POST /api/v1/suppressions", s.apiSuppress)
	h("GET /api/v1/webhooks", s.apiWebhooks)
	h("GET /api/v1/webhooks/{name}/deliveries", s.apiWebhookDeliveries)
	h("POST /api/v1/webhooks/{name}/test", s.apiWebhookTest)
	h("DELETE /api/v1/suppressions/{email}", s.apiUnsuppress)
	h("GET /api/v1/stats", s.apiStats)
	h("GET /api/v1/stats/health", s.apiHealth)
	h("GET /api/v1/stats/sequences", s.apiStepStats)
	h("POST /api/v1/stats/refresh", s.apiRefresh)
	h("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// page is a list answer.
type page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

func (s *Server) apiContacts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, "limit", "%v", err)
		return
	}
	cq := contact.Query{Email: q.Get("email"), Stage: q.Get("stage"), Sort: q.Get("sort"), After: q.Get("after"), Limit: limit}
	if cq.Sort != "" && !contains(contact.Sorts, cq.Sort) {
		fieldError(w, http.StatusBadRequest, "sort", "sort: must be one of %s, not %q", strings.Join(contact.Sorts, ", "), cq.Sort)
		return
	}
	if cq.Stage != "" && !validStage(cq.Stage) {
		fieldError(w, http.StatusBadRequest, "stage", "stage: must be one of awareness, consideration, decision, retention, advocacy, not %q", cq.Stage)
		return
	}
	if id := q.Get("id"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n <= 0 {
			fieldError(w, http.StatusBadRequest, "id", "id: must be a positive whole number, not %q", id)
			return
		}
		c, err := s.st.ContactByID(r.Context(), n)
		items := []contact.Contact{}
		if err == nil {
			items = append(items, c)
		} else if !errors.Is(err, contact.ErrNotFound) {
			s.internal(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, page[contact.Contact]{Items: items})
		return
	}
	items, next, err := s.st.Contacts(r.Context(), cq)
	if errors.Is(err, contact.ErrBadCursor) {
		fieldError(w, http.StatusBadRequest, "after", "after: not a cursor from this listing (use the next value of the previous page, with the same sort)")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if items == nil {
		items = []contact.Contact{}
	}
	writeJSON(w, http.StatusOK, page[contact.Contact]{Items: items, Next: next})
}

// contactParam reads {id}; it writes the 400 or 404 itself.
func (s *Server) contactParam(w http.ResponseWriter, r *http.Request) (contact.Contact, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		fieldError(w, http.StatusBadRequest, "id", "id: must be a positive whole number, not %q", r.PathValue("id"))
		return contact.Contact{}, false
	}
	c, err := s.st.ContactByID(r.Context(), id)
	if errors.Is(err, contact.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no such contact", Field: "id"})
		return c, false
	}
	if err != nil {
		s.internal(w, r, err)
		return c, false
	}
	return c, true
}

// contactAnswer is a contact as the API shows it: with why it is parked,
// if it is (its evaluation failed; see lifecycle.Parker).
type contactAnswer struct {
	contact.Contact
	Parked *contact.Parking `json:"parked,omitempty"`
}

// answer adds c's parking.
func (s *Server) answer(r *http.Request, c contact.Contact) (contactAnswer, error) {
	p, err := s.st.ContactParking(r.Context(), c.ID)
	return contactAnswer{Contact: c, Parked: p}, err
}

func (s *Server) apiContact(w http.ResponseWriter, r *http.Request) {
	c, ok := s.contactParam(w, r)
	if !ok {
		return
	}
	a, err := s.answer(r, c)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// apiMove is a stage move as the API shows it.
type apiMove struct {
	From     string         `json:"from"`
	To       string         `json:"to"`
	Rule     string         `json:"rule"`
	Version  int            `json:"rule_version"`
	Observed map[string]any `json:"observed"`
	Trigger  string         `json:"trigger"`
	At       time.Time      `json:"at"`
}

func (s *Server) apiTimeline(w http.ResponseWriter, r *http.Request) {
	c, ok := s.contactParam(w, r)
	if !ok {
		return
	}
	t, err := s.st.ContactTimeline(r.Context(), c.ID, 500)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	moves := make([]apiMove, len(t.Moves))
	for i, m := range t.Moves {
		moves[i] = apiMove{From: m.From, To: m.To, Rule: m.Rule, Version: m.Version, Observed: m.Observed, Trigger: m.Trigger, At: m.At}
	}
	a, err := s.answer(r, c)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"contact": a, "moves": moves, "sends": nonNil(t.Sends), "offers": nonNil(t.Draws),
		"enrolments": nonNil(t.Enrolments), "conversions": nonNil(t.Conversions), "events": nonNil(t.Events), "events_total": t.EventsTotal,
	})
}

// snakeNamed returns definitions as the API shows them: their stored JSON
// (Go field names: Subject, CapMax) with every key in snake_case.
func snakeNamed(list []journey.Named) []journey.Named {
	out := make([]journey.Named, len(list))
	for i, n := range list {
		out[i] = n
		out[i].Definition = snakeKeys(n.Definition)
	}
	return nonNil(out)
}

// snakeKeys rewrites the keys of every object in the JSON document raw in
// snake_case (HTML → html, CapMax → cap_max); raw is returned as it is if
// it is not JSON.
func snakeKeys(raw json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	var conv func(any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			m := make(map[string]any, len(v))
			for k, x := range v {
				m[snakeCase(k)] = conv(x)
			}
			return m
		case []any:
			for i := range v {
				v[i] = conv(v[i])
			}
		}
		return v
	}
	b, err := json.Marshal(conv(v))
	if err != nil {
		return raw
	}
	return b
}

// snakeCase turns a Go field name into snake_case: CapMax → cap_max,
// HTMLBody → html_body; a name already in lower case is kept.
func snakeCase(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		upper := unicode.IsUpper(r)
		if upper && i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1]) ||
			i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) apiRules(w http.ResponseWriter, r *http.Request) {
	rules, err := s.st.RuleInfos(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[journey.RuleInfo]{Items: nonNil(rules)})
}

func (s *Server) findRule(w http.ResponseWriter, r *http.Request) (journey.RuleInfo, bool) {
	rules, err := s.st.RuleInfos(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return journey.RuleInfo{}, false
	}
	for _, ru := range rules {
		if ru.Name == r.PathValue("name") {
			return ru, true
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: "no such rule", Field: "name"})
	return journey.RuleInfo{}, false
}

func (s *Server) apiRule(w http.ResponseWriter, r *http.Request) {
	if ru, ok := s.findRule(w, r); ok {
		writeJSON(w, http.StatusOK, ru)
	}
}

// ruleBody is a rule edit.
type ruleBody struct {
	From []string `json:"from"`
	To   string   `json:"to"`
	When string   `json:"when"`
}

func (s *Server) apiSaveRule(w http.ResponseWriter, r *http.Request) {
	var b ruleBody
	if !s.decode(w, r, &b) {
		return
	}
	edit, ferr := checkRule(r.PathValue("name"), b)
	if ferr != nil {
		writeJSON(w, http.StatusBadRequest, ferr)
		return
	}
	// A rule that would move contacts back and forth on every pass is
	// refused before anything is saved.
	dry, err := s.dryRun(r.Context(), edit)
	if errors.Is(err, errDryRunBusy) {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusTooManyRequests, apiError{Error: "checking the rule: " + err.Error()})
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if msg := dry.loopsError(); msg != "" {
		writeJSON(w, http.StatusConflict, map[string]any{"error": msg, "field": "when", "loops": dry.Loops})
		return
	}
	changes, err := s.st.SaveRule(r.Context(), edit.rule)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ru, ok := s.findRule(w, r)
	if !ok {
		return
	}
	what := "unchanged"
	if len(changes) > 0 {
		what = changes[0].What
	}
	writeJSON(w, http.StatusOK, map[string]any{"rule": ru, "change": what})
}

func (s *Server) apiDryRun(w http.ResponseWriter, r *http.Request) {
	var b ruleBody
	if r.ContentLength != 0 {
		if !s.decode(w, r, &b) {
			return
		}
	} else {
		ru, ok := s.findRule(w, r)
		if !ok {
			return
		}
		b = ruleBody{From: ru.From, To: ru.To, When: ru.Condition}
	}
	edit, ferr := checkRule(r.PathValue("name"), b)
	if ferr != nil {
		writeJSON(w, http.StatusBadRequest, ferr)
		return
	}
	res, err := s.dryRun(r.Context(), edit)
	s.answerDryRun(w, r, res, err)
}

func (s *Server) apiCompile(w http.ResponseWriter, r *http.Request) {
	var b struct {
		When string `json:"when"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	writeJSON(w, http.StatusOK, compileCheck(b.When))
}

func (s *Server) apiTones(w http.ResponseWriter, r *http.Request) {
	tones, err := s.st.ToneRules(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	type tone struct {
		Tone string `json:"tone"`
		When string `json:"when,omitempty"`
	}
	out := make([]tone, len(tones))
	for i, t := range tones {
		out[i] = tone{t.Tone, t.When}
	}
	writeJSON(w, http.StatusOK, page[tone]{Items: out})
}

func (s *Server) apiTemplates(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.TemplateList(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[journey.Named]{Items: snakeNamed(list)})
}

func (s *Server) apiTemplate(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.TemplateList(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	for _, t := range snakeNamed(list) {
		if t.Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, t)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Error: "no such template", Field: "name"})
}

func (s *Server) apiPreview(w http.ResponseWriter, r *http.Request) {
	contact := r.URL.Query().Get("contact")
	if contact == "" {
		fieldError(w, http.StatusBadRequest, "contact", "contact: required (id, userId, anonymousId or email)")
		return
	}
	p, field, err := s.preview(r.Context(), r.PathValue("name"), contact, r.URL.Query().Get("tone"))
	if field != "" {
		code := http.StatusNotFound
		if field == "tone" {
			code = http.StatusBadRequest
		}
		fieldError(w, code, field, "%v", err)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) apiSequences(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.SequenceList(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[journey.Named]{Items: snakeNamed(list)})
}

func (s *Server) apiOffers(w http.ResponseWriter, r *http.Request) {
	p, field, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		fieldError(w, http.StatusBadRequest, field, "%v", err)
		return
	}
	list, err := s.st.OfferList(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	figs, err := s.st.OfferStats(r.Context(), p)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": snakeNamed(list), "draws": offerRows(list, figs), "from": day(p.From), "to": day(p.To)})
}

func (s *Server) apiSuppressions(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, "limit", "%v", err)
		return
	}
	sort := r.URL.Query().Get("sort")
	if sort != "" && !contains(contact.SuppressionSorts, sort) {
		fieldError(w, http.StatusBadRequest, "sort", "sort: must be one of %s, not %q", strings.Join(contact.SuppressionSorts, ", "), sort)
		return
	}
	items, next, err := s.st.Suppressions(r.Context(), sort, r.URL.Query().Get("after"), limit)
	if errors.Is(err, contact.ErrBadCursor) {
		fieldError(w, http.StatusBadRequest, "after", "after: not a cursor from this listing")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page[contact.Suppression]{Items: nonNil(items), Next: next})
}

func (s *Server) apiSuppress(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Email  string `json:"email"`
		Detail string `json:"detail"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	email, err := ingest.NormalizeEmail(b.Email)
	if err != nil {
		fieldError(w, http.StatusBadRequest, "email", "email: %v", err)
		return
	}
	if len(b.Detail) > 500 {
		fieldError(w, http.StatusBadRequest, "detail", "detail: longer than 500 characters")
		return
	}
	detail := b.Detail
	if detail == "" {
		detail = "added with API key " + apiKeyOf(r.Context()).Name
	}
	n, err := s.st.Suppress(r.Context(), email, "manual", detail)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"email": email, "reason": "manual", "cancelled_sends": n})
}

func (s *Server) apiUnsuppress(w http.ResponseWriter, r *http.Request) {
	ok, err := s.st.Unsuppress(r.Context(), r.PathValue("email"))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no manual suppression for this address (other reasons are removed by the contact resubscribing)", Field: "email"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiStats(w http.ResponseWriter, r *http.Request) {
	p, field, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		fieldError(w, http.StatusBadRequest, field, "%v", err)
		return
	}
	o, err := s.overview(r.Context(), p)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) apiHealth(w http.ResponseWriter, r *http.Request) {
	cur, base, field, err := s.healthPeriods(r)
	if err != nil {
		fieldError(w, http.StatusBadRequest, field, "%v", err)
		return
	}
	h, err := s.health(r.Context(), cur, base)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) apiStepStats(w http.ResponseWriter, r *http.Request) {
	p, field, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		fieldError(w, http.StatusBadRequest, field, "%v", err)
		return
	}
	rows, err := s.st.StepStats(r.Context(), p)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": nonNil(rows), "from": day(p.From), "to": day(p.To)})
}

func (s *Server) apiRefresh(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Full bool `json:"full"`
	}
	if r.ContentLength != 0 && !s.decode(w, r, &b) {
		return
	}
	if err := s.Refresh(r.Context(), b.Full); err != nil {
		s.internal(w, r, err)
		return
	}
	st, err := s.st.StatsStateNow(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"refreshed_at": st.RefreshedAt, "stages": st.Stages})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func validStage(s string) bool {
	return contains([]string{"awareness", "consideration", "decision", "retention", "advocacy"}, s)
}

func day(t time.Time) string { return t.Format(time.DateOnly) }
