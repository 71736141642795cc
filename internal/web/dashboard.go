package web

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/auth"
	"github.com/waymark/waymark/internal/contact"
	"github.com/waymark/waymark/internal/humanize"
	"github.com/waymark/waymark/internal/journey"
	"github.com/waymark/waymark/internal/report"
	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/lifecycle"
	"github.com/waymark/waymark/rule"
)

const sessionCookie = "waymark_session"

type pageTemplate struct{ t *template.Template }

var funcs = template.FuncMap{
	"n":     humanize.Comma,
	"ni":    func(v int) string { return humanize.Comma(int64(v)) },
	"pct":   func(p *float64) string { return pctText(p) },
	"hours": func(p *float64) string { return hoursText(p) },
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"ms": func(p *float64) string {
		if p == nil {
			return ""
		}
		return fmt.Sprintf("%.1f ms", *p)
	},
	"whenp": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"json": func(v any) string {
		// Escaped once, for HTML, by the template: not also by the
		// encoder (Shipping & returns, not Shipping \u0026 returns).
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return strings.TrimSuffix(b.String(), "\n")
	},
	"add":    func(a, b int) int { return a + b },
	"pct100": func(f float64) float64 { return f * 100 },
	"join":   strings.Join,
	"delta":  deltaText,
	"money":  moneyText,
	"dur":    durationText,
}

func pctText(p *float64) string {
	if p == nil {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", *p*100)
}

func hoursText(p *float64) string {
	if p == nil {
		return "–"
	}
	h := *p
	switch {
	case h < 1:
		return fmt.Sprintf("%.0f min", h*60)
	case h < 48:
		return fmt.Sprintf("%.1f h", h)
	default:
		return fmt.Sprintf("%.1f days", h/24)
	}
}

// deltaText says how a figure moved against its baseline; higherIsBetter
// decides the colour class.
func deltaText(cur, base *float64, higherIsBetter bool) template.HTML {
	if cur == nil || base == nil || *base == 0 {
		return ""
	}
	d := (*cur - *base) / *base * 100
	class := "same"
	if d > 0.5 == higherIsBetter && (d > 0.5 || d < -0.5) {
		class = "better"
	} else if d > 0.5 || d < -0.5 {
		class = "worse"
	}
	return template.HTML(fmt.Sprintf(`<span class="delta %s">%+.0f%%</span>`, class, d))
}

func mustPages() map[string]*pageTemplate {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*pageTemplate{}
	// Parts (a name starting with _) are templates pages share.
	parts := []string{"templates/layout.html"}
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			parts = append(parts, n)
		}
	}
	for _, n := range names {
		if strings.HasSuffix(n, "/layout.html") || strings.HasPrefix(path.Base(n), "_") {
			continue
		}
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, append(slices.Clone(parts), n)...))
		out[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = &pageTemplate{t}
	}
	return out
}

// view is what every page gets.
type view struct {
	Title   string
	Nav     string
	CSRF    string
	KeyName string
	Mail    bool
	Error   string
	Took    string
	Data    any
}

type session struct {
	auth.Session
	token string
}

type sessCtxKey struct{}

func sessionOf(r *http.Request) session {
	s, _ := r.Context().Value(sessCtxKey{}).(session)
	return s
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, v view) {
	sess := sessionOf(r)
	v.CSRF, v.KeyName, v.Mail = sess.CSRF, sess.Key.Name, s.cfg.CapturedMail != nil
	var buf bytes.Buffer
	if err := s.pages[name].t.Execute(&buf, v); err != nil {
		s.log.Error("rendering a dashboard page", "page", name, "err", err)
		http.Error(w, "internal error (logged)", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// dash wraps a dashboard page: a live session (else the login form), and
// for anything but GET a matching CSRF token and same-origin request.
func (s *Server) dash(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		var sess auth.Session
		if err == nil {
			sess, err = s.st.SessionByToken(r.Context(), c.Value)
		}
		if err != nil && !errors.Is(err, auth.ErrBadKey) && !errors.Is(err, http.ErrNoCookie) {
			s.log.Error("reading a dashboard session", "err", err)
			http.Error(w, "internal error (logged)", http.StatusInternalServerError)
			return
		}
		if err != nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/dashboard/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		// Dashboard actions count against the key's rate limit, as its
		// API calls do.
		if ok, wait := s.limiter.allow(sess.Key.ID); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			http.Error(w, "too many requests for this key: retry in a moment", http.StatusTooManyRequests)
			return
		}
		if f := badParam(r); f != "" {
			s.render(w, r, http.StatusBadRequest, "notfound", view{Title: "Bad request", Error: f + ": not valid text (invalid UTF-8 or a NUL character)"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(sess.CSRF)) != 1 {
				http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessCtxKey{}, session{Session: sess, token: c.Value})))
	})
}

// sameOrigin refuses requests whose Origin (or, without it, Referer)
// names another host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) routesDashboard() {
	d := func(pattern string, fn http.HandlerFunc) { s.mux.Handle(pattern, s.dash(fn)) }
	s.mux.HandleFunc("GET /dashboard/login", s.loginForm)
	s.mux.HandleFunc("POST /dashboard/login", s.login)
	static, _ := fs.Sub(assets, "static")
	s.mux.Handle("GET /dashboard/static/", http.StripPrefix("/dashboard/static/", noListing(http.FileServerFS(static))))
	d("POST /dashboard/logout", s.logout)
	d("GET /dashboard/{$}", s.overviewPage)
	d("GET /dashboard/health", s.healthPage)
	d("GET /dashboard/contacts", s.contactsPage)
	d("GET /dashboard/contacts/export", s.exportContactsPage)
	d("GET /dashboard/contacts/{id}", s.contactPage)
	d("GET /dashboard/sequences", s.sequencesPage)
	d("GET /dashboard/rules", s.rulesPage)
	d("GET /dashboard/rules/{name}", s.rulePage)
	d("POST /dashboard/rules/{name}", s.ruleAction)
	d("POST /dashboard/compile", s.compileJSON)
	d("GET /dashboard/mail", s.mailPage)
	d("GET /dashboard/webhooks", s.webhooksPage)
	d("POST /dashboard/webhooks/{name}/test", s.webhookTestAction)
	d("/dashboard/", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found"})
	})
}

func (s *Server) loginForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", view{Title: "Log in", Data: safeNext(r.URL.Query().Get("next"))})
}

// safeNext keeps only local dashboard paths (no open redirect).
func safeNext(n string) string {
	if !strings.HasPrefix(n, "/dashboard/") || strings.HasPrefix(n, "//") || strings.Contains(n, "\\") {
		return "/dashboard/"
	}
	return n
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := safeNext(r.PostFormValue("next"))
	k, err := s.st.Authenticate(r.Context(), strings.TrimSpace(r.PostFormValue("key")))
	if errors.Is(err, auth.ErrBadKey) {
		s.render(w, r, http.StatusUnauthorized, "login", view{Title: "Log in", Error: "That key is not valid (or was revoked). Create one with: waymark keys create --name NAME", Data: next})
		return
	}
	if err != nil {
		s.log.Error("logging in", "err", err)
		http.Error(w, "internal error (logged)", http.StatusInternalServerError)
		return
	}
	token, _, err := s.st.CreateSession(r.Context(), k.ID, s.cfg.SessionTTL)
	if err != nil {
		s.log.Error("logging in", "err", err)
		http.Error(w, "internal error (logged)", http.StatusInternalServerError)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/dashboard/", MaxAge: int(s.cfg.SessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || s.cfg.SecureCookies,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.st.EndSession(r.Context(), sessionOf(r).token); err != nil {
		s.log.Warn("logging out", "err", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/dashboard/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || s.cfg.SecureCookies})
	http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
}

func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, err error) {
	s.render(w, r, http.StatusBadRequest, "notfound", view{Title: "Bad request", Error: err.Error()})
}

func (s *Server) failed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.log.Error("dashboard", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error (logged)", http.StatusInternalServerError)
}

func (s *Server) overviewPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, _, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	o, err := s.overview(r.Context(), p)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	// The period's rates and revenue: every email's, as the Reports page
	// totals them.
	earned, err := s.ownReport(r.Context(), "", "", report.ByTemplate, report.Period{From: p.From, To: p.To}, nil)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var total int64
	for _, st := range o.Stages {
		total += st.N
	}
	s.render(w, r, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Took: time.Since(start).Round(time.Microsecond).String(), Data: map[string]any{
		"O": o, "Total": total, "Earned": earned, "Funnel": funnelSVG(o.Stages), "Flow": flowSVG(o.Stages, o.Flows), "Email": emailSVG(o.Email),
	}})
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cur, base, _, err := s.healthPeriods(r)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	h, err := s.health(r.Context(), cur, base)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var before url.Values
	if h.LastChange != nil {
		// Baseline: the 30 days before the journey's last change.
		lc := h.LastChange.UTC().Truncate(24 * time.Hour)
		before = url.Values{"from": {day(cur.From)}, "to": {day(cur.To)}, "base_from": {day(lc.AddDate(0, 0, -30))}, "base_to": {day(lc)}}
	}
	s.render(w, r, http.StatusOK, "health", view{Title: "Journey health", Nav: "health", Took: time.Since(start).Round(time.Microsecond).String(), Data: map[string]any{
		"H": h, "BeforeChange": before.Encode(), "Cur": cur, "Base": base,
		"ToIncl": day(cur.To.AddDate(0, 0, -1)), "BaseToIncl": day(base.To.AddDate(0, 0, -1)),
	}})
}

func (s *Server) contactsPage(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q != "" {
		id, err := s.st.ContactRef(r.Context(), q)
		if err == nil {
			http.Redirect(w, r, fmt.Sprintf("/dashboard/contacts/%d", id), http.StatusSeeOther)
			return
		}
		if !errors.Is(err, contact.ErrNotFound) {
			s.failed(w, r, err)
			return
		}
	}
	stage := r.URL.Query().Get("stage")
	if stage != "" && !validStage(stage) {
		stage = ""
	}
	list, next, err := s.st.Contacts(r.Context(), contact.Query{Stage: stage, Sort: "-id", After: r.URL.Query().Get("after"), Limit: 50})
	if errors.Is(err, contact.ErrBadCursor) {
		s.badRequest(w, r, errors.New("after: not a cursor from this listing"))
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	notFound := ""
	if q != "" {
		notFound = q
	}
	s.render(w, r, http.StatusOK, "contacts", view{Title: "Contacts", Nav: "contacts", Data: map[string]any{
		"List": list, "Next": next, "Stage": stage, "NotFound": notFound, "Stages": rule.Stages,
	}})
}

// timelineItem is one line of a contact's journey.
type timelineItem struct {
	At    time.Time
	Kind  string // event, move, email, offer, enrolment, conversion
	Event *contact.TimelineEvent
	Move  *contact.Transition
	Send  *contact.TimelineSend
	Draw  *contact.TimelineDraw
	Enrol *contact.TimelineEnrolment
	Conv  *report.Conversion
	Back  bool
	seq   int
}

func (s *Server) contactPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no such contact"})
		return
	}
	c, err := s.st.ContactByID(r.Context(), id)
	if errors.Is(err, contact.ErrNotFound) {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no such contact"})
		return
	}
	if err != nil {
		s.failed(w, r, err)
		return
	}
	t, err := s.st.ContactTimeline(r.Context(), c.ID, 200)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var items []timelineItem
	for i := range t.Events {
		e := &t.Events[i]
		items = append(items, timelineItem{At: e.At, Kind: "event", Event: e})
	}
	for i := range t.Moves {
		m := &t.Moves[i]
		items = append(items, timelineItem{At: m.At, Kind: "move", Move: m, Back: stageIdx(m.To) < stageIdx(m.From)})
	}
	for i := range t.Sends {
		sd := &t.Sends[i]
		at := sd.DueAt
		if sd.SentAt != nil {
			at = *sd.SentAt
		}
		items = append(items, timelineItem{At: at, Kind: "email", Send: sd})
	}
	for i := range t.Draws {
		items = append(items, timelineItem{At: t.Draws[i].At, Kind: "offer", Draw: &t.Draws[i]})
	}
	for i := range t.Enrolments {
		items = append(items, timelineItem{At: t.Enrolments[i].EnrolledAt, Kind: "enrolment", Enrol: &t.Enrolments[i]})
	}
	for i := range t.Conversions {
		items = append(items, timelineItem{At: t.Conversions[i].At, Kind: "conversion", Conv: &t.Conversions[i]})
	}
	// Newest first; at the same instant, what came later (a move after
	// the event that caused it, the second hop of a settling) first.
	order := map[string]int{"event": 0, "conversion": 1, "move": 2, "enrolment": 3, "offer": 4, "email": 5}
	for i := range items {
		items[i].seq = i
	}
	slices.SortFunc(items, func(a, b timelineItem) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		if c := order[b.Kind] - order[a.Kind]; c != 0 {
			return c
		}
		return b.seq - a.seq
	})
	parked, err := s.st.ContactParking(r.Context(), c.ID)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	// Whether the rules move it back and forth on every pass.
	flip := ""
	if check, err := s.engine.Check(r.Context(), c.ID, s.now()); err != nil {
		s.log.Warn("checking a contact's rules", "contact", c.ID, "err", err)
	} else if rules, stages, ok := lifecycle.LoopOf(check); ok {
		flip = lifecycle.Loop{Rules: rules, Stages: stages}.String()
	}
	traits, _ := json.MarshalIndent(c.Traits, "", "  ")
	s.render(w, r, http.StatusOK, "contact", view{Title: "Contact " + strconv.FormatInt(c.ID, 10), Nav: "contacts", Took: time.Since(start).Round(time.Microsecond).String(), Data: map[string]any{
		"C": c, "T": t, "Parked": parked, "Flip": flip, "Items": items, "Traits": string(traits), "StageIndex": stageIdx(c.Stage), "Stages": rule.Stages,
	}})
}

func (s *Server) sequencesPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p, _, err := s.period(r, "from", "to", 30, 0)
	if err != nil {
		s.badRequest(w, r, err)
		return
	}
	rows, err := s.st.StepStats(r.Context(), p)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	offers, err := s.st.OfferList(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	figs, err := s.st.OfferStats(r.Context(), p)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	rp := report.Period{From: p.From, To: p.To}
	earned, err := s.ownReport(r.Context(), "step-report", "sequence step", report.ByStep, rp, nil)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	holdouts, err := s.st.Holdouts(r.Context(), rp)
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var hv []holdoutView
	for _, h := range holdouts {
		hv = append(hv, newHoldoutView(h))
	}
	type stepRow struct {
		stats.StepFigures
		OpenRate, ClickRate, ConvRate *float64
	}
	var steps []stepRow
	for _, f := range rows {
		steps = append(steps, stepRow{f, ratio(f.Opened, f.Sent), ratio(f.Clicked, f.Sent), ratio(f.Converted, f.Sent)})
	}
	s.render(w, r, http.StatusOK, "sequences", view{Title: "Sequences & templates", Nav: "sequences", Took: time.Since(start).Round(time.Microsecond).String(), Data: map[string]any{
		"Steps": steps, "Offers": offerRows(offers, figs), "Earned": earned, "Holdouts": hv,
		"HoldoutLink": "/dashboard/reports?" + reportQuery{Period: rp, By: report.ByOffer}.values("").Encode() + "#holdouts", "From": day(p.From), "To": day(p.To.AddDate(0, 0, -1)),
	}})
}

func (s *Server) rulesPage(w http.ResponseWriter, r *http.Request) {
	rules, err := s.st.RuleInfos(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "rules", view{Title: "Rules", Nav: "rules", Data: rules})
}

// editorData is the rule editor's state.
type editorData struct {
	Rule     journey.RuleInfo
	New      bool
	From     []string
	To       string
	When     string
	Stages   []rule.Stage
	Check    *compileResult
	FieldErr *apiError
	DryRun   *dryRunResult
	Saved    string
}

func (d editorData) HasFrom(s rule.Stage) bool { return slices.Contains(d.From, string(s)) }

func (s *Server) editor(r *http.Request, name string) (editorData, bool, error) {
	rules, err := s.st.RuleInfos(r.Context())
	if err != nil {
		return editorData{}, false, err
	}
	d := editorData{Stages: rule.Stages}
	for _, ru := range rules {
		if ru.Name == name {
			d.Rule = ru
			d.From, d.To, d.When = ru.From, ru.To, ru.Condition
			return d, true, nil
		}
	}
	d.Rule.Name, d.New = name, true
	return d, false, nil
}

func (s *Server) rulePage(w http.ResponseWriter, r *http.Request) {
	d, found, err := s.editor(r, r.PathValue("name"))
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !found {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no such rule"})
		return
	}
	if r.URL.Query().Get("saved") != "" {
		d.Saved = fmt.Sprintf("Saved: %s is now version %d.", d.Rule.Name, d.Rule.Version)
		if r.URL.Query().Get("saved") == "same" {
			d.Saved = "Nothing changed: the rule is as it was (version " + strconv.Itoa(d.Rule.Version) + ")."
		}
	}
	s.render(w, r, http.StatusOK, "rule", view{Title: "Rule " + d.Rule.Name, Nav: "rules", Data: d})
}

// ruleAction handles the editor's buttons: check (compile), dry-run and
// save.
func (s *Server) ruleAction(w http.ResponseWriter, r *http.Request) {
	d, found, err := s.editor(r, r.PathValue("name"))
	if err != nil {
		s.failed(w, r, err)
		return
	}
	if !found {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "no such rule"})
		return
	}
	if err := r.ParseForm(); err != nil {
		s.badRequest(w, r, err)
		return
	}
	d.From, d.To, d.When = r.PostForm["from"], r.PostFormValue("to"), r.PostFormValue("when")
	c := compileCheck(d.When)
	d.Check = &c
	code := http.StatusOK
	edit, ferr := checkRule(d.Rule.Name, ruleBody{From: d.From, To: d.To, When: d.When})
	d.FieldErr = ferr
	switch action := r.PostFormValue("action"); {
	case ferr != nil && action != "check":
		code = http.StatusUnprocessableEntity
	case action == "dry-run":
		res, ok := s.editorDryRun(w, r, edit)
		if !ok {
			return
		}
		d.DryRun = res
	case action == "save":
		if sessionOf(r).Key.ReadOnly {
			http.Error(w, "this API key is read-only", http.StatusForbidden)
			return
		}
		// Loops are refused before anything is saved; the dry run says
		// which rules and how many contacts.
		res, ok := s.editorDryRun(w, r, edit)
		if !ok {
			return
		}
		if msg := res.loopsError(); msg != "" {
			d.DryRun = res
			d.FieldErr = &apiError{Field: "when", Error: msg}
			s.render(w, r, http.StatusConflict, "rule", view{Title: "Rule " + d.Rule.Name, Nav: "rules", Data: d})
			return
		}
		changes, err := s.st.SaveRule(r.Context(), edit.rule)
		if err != nil {
			s.failed(w, r, err)
			return
		}
		saved := "1"
		if len(changes) == 0 {
			saved = "same"
		}
		http.Redirect(w, r, "/dashboard/rules/"+url.PathEscape(d.Rule.Name)+"?saved="+saved, http.StatusSeeOther)
		return
	}
	s.render(w, r, code, "rule", view{Title: "Rule " + d.Rule.Name, Nav: "rules", Data: d})
}

// editorDryRun runs the editor's dry run of edit; when it cannot (another
// is running, or it failed) it answers and returns false.
func (s *Server) editorDryRun(w http.ResponseWriter, r *http.Request, edit ruleEdit) (*dryRunResult, bool) {
	res, err := s.dryRun(r.Context(), edit)
	if errors.Is(err, errDryRunBusy) {
		w.Header().Set("Retry-After", "5")
		s.render(w, r, http.StatusTooManyRequests, "notfound", view{Title: "Busy", Error: err.Error()})
		return nil, false
	}
	if err != nil {
		s.failed(w, r, err)
		return nil, false
	}
	return &res, true
}

// compileJSON is the editor script's as-you-type check.
func (s *Server) compileJSON(w http.ResponseWriter, r *http.Request) {
	var b struct {
		When string `json:"when"`
	}
	if !s.decode(w, r, &b) {
		return
	}
	writeJSON(w, http.StatusOK, compileCheck(b.When))
}

// mailPageSize is how many captured emails a page of the mail list shows.
const mailPageSize = 100

func (s *Server) mailPage(w http.ResponseWriter, r *http.Request) {
	if s.cfg.CapturedMail == nil {
		s.render(w, r, http.StatusNotFound, "notfound", view{Title: "Not found", Error: "captured mail is shown in demo mode only (waymark demo)"})
		return
	}
	mails, err := s.cfg.CapturedMail(r.Context())
	if err != nil {
		s.failed(w, r, err)
		return
	}
	var sel *Mail
	if id := r.URL.Query().Get("id"); id != "" {
		for i := range mails {
			if mails[i].ID == id {
				sel = &mails[i]
			}
		}
	}
	// A search (recipient, sender or subject), then pages of mailPage.
	all := len(mails)
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q != "" {
		lq := strings.ToLower(q)
		mails = slices.DeleteFunc(slices.Clone(mails), func(m Mail) bool {
			return !strings.Contains(strings.ToLower(m.Subject+"\x00"+m.From+"\x00"+strings.Join(m.To, ",")), lq)
		})
	}
	found := len(mails)
	pg, _ := strconv.Atoi(r.URL.Query().Get("page"))
	pages := max(1, (found+mailPageSize-1)/mailPageSize)
	pg = min(max(pg, 1), pages)
	mails = mails[min((pg-1)*mailPageSize, found):min(pg*mailPageSize, found)]
	if sel == nil && r.URL.Query().Get("id") == "" && len(mails) > 0 {
		sel = &mails[0]
	}
	link := func(page int) string {
		v := url.Values{"page": {strconv.Itoa(page)}}
		if q != "" {
			v.Set("q", q)
		}
		return "?" + v.Encode()
	}
	data := map[string]any{"Mails": mails, "Sel": sel, "Q": q, "All": all, "Found": found, "Page": pg, "Pages": pages,
		"First": (pg-1)*mailPageSize + 1, "Last": (pg-1)*mailPageSize + len(mails)}
	if pg > 1 {
		data["Prev"] = link(pg - 1)
	}
	if pg < pages {
		data["Next"] = link(pg + 1)
	}
	if q != "" {
		data["Keep"] = "&q=" + url.QueryEscape(q) + "&page=" + strconv.Itoa(pg)
	} else if pg > 1 {
		data["Keep"] = "&page=" + strconv.Itoa(pg)
	}
	if sel != nil && sel.HTML != "" {
		// Shown in a sandboxed frame: the email's HTML runs nothing and
		// reaches nothing of the dashboard.
		data["Frame"] = template.URL("data:text/html;charset=utf-8," + url.PathEscape(sel.HTML))
	}
	s.render(w, r, http.StatusOK, "mail", view{Title: "Captured mail", Nav: "mail", Data: data})
}
