package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/waymark/waymark/campaigns"
	"github.com/waymark/waymark/internal/clock"
	"github.com/waymark/waymark/internal/stats"
	"github.com/waymark/waymark/lifecycle"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Mail is one email a capture server received (the demo's captured mail).
type Mail struct {
	ID      string
	From    string
	To      []string
	Subject string
	Date    time.Time
	Text    string
	HTML    string
}

// Config is what the API and dashboard run on.
type Config struct {
	// Store is what the API and the dashboard read and change (the
	// application passes its *store.Store).
	Store Store
	// Engine runs dry runs of rule edits; one is made on Store if nil.
	Engine *lifecycle.Engine
	Log    *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// CapturedMail, if set, lists captured emails, newest first, for
	// /dashboard/mail (demo mode).
	CapturedMail func(ctx context.Context) ([]Mail, error)
	// RatePerSecond and Burst limit each API key's requests (defaults 20
	// and 40); over it, 429 with Retry-After.
	RatePerSecond float64
	Burst         int
	// MaxBody is the largest request body accepted (default 1 MiB); larger
	// gets 413.
	MaxBody int64
	// RefreshEvery is how often Run refreshes the rollups (default 30 s).
	RefreshEvery time.Duration
	// SecureCookies marks the session cookie Secure even when this hop is
	// plain HTTP (TLS ends at a proxy). Requests over TLS always get it.
	SecureCookies bool
	// PublicURL is the base of links in previews.
	PublicURL string
	// SessionTTL is how long a dashboard login lasts (default 12 h).
	SessionTTL time.Duration
	// Sender sends broadcasts' test emails (nil: no SMTP server).
	Sender *campaigns.Sender
	// RefreshReports brings the reports up to date with the rollups
	// (attribution, then the reports' rollups: app.RefreshReports); nil:
	// the store's rollups only.
	RefreshReports func(ctx context.Context, now time.Time, full bool) error
}

// Server is the management API and the dashboard.
type Server struct {
	cfg     Config
	st      Store
	engine  *lifecycle.Engine
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	limiter *limiter
	pages   map[string]*pageTemplate
	// dryRuns holds a token while a dry run runs (one at a time).
	dryRuns chan struct{}
}

// New returns the API and dashboard on cfg.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	if cfg.RatePerSecond <= 0 {
		cfg.RatePerSecond = 20
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 40
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = 30 * time.Second
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.RefreshReports == nil {
		cfg.RefreshReports = cfg.Store.RefreshReports
	}
	s := &Server{cfg: cfg, st: cfg.Store, engine: cfg.Engine, log: cfg.Log, now: cfg.Now, mux: http.NewServeMux()}
	if s.engine == nil {
		s.engine = lifecycle.NewEngine(cfg.Store, cfg.Log)
	}
	s.limiter = newLimiter(cfg.RatePerSecond, float64(cfg.Burst), cfg.Now)
	s.dryRuns = make(chan struct{}, 1)
	s.pages = mustPages()
	s.routesAPI()
	s.routesReports()
	s.routesBroadcasts()
	s.routesDashboard()
	s.routesBroadcastPages()
	s.routesReportPages()
	return s
}

// ServeHTTP serves the API and the dashboard.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Mount adds the API, the dashboard and a redirect from / to mux.
func (s *Server) Mount(mux *http.ServeMux) {
	mux.Handle("/api/v1/", s)
	mux.Handle("/dashboard/", s)
	mux.Handle("GET /{$}", http.RedirectHandler("/dashboard/", http.StatusSeeOther))
	mux.Handle("GET /dashboard", http.RedirectHandler("/dashboard/", http.StatusSeeOther))
}

// Run refreshes the rollups every RefreshEvery until ctx is done.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.RefreshEvery)
	defer t.Stop()
	for {
		if err := s.Refresh(ctx, false); err != nil && ctx.Err() == nil {
			s.log.Warn("refreshing the dashboard's rollups", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh brings the rollups up to date (all of them with full): the
// dashboard's, then the reports'.
func (s *Server) Refresh(ctx context.Context, full bool) error {
	start := time.Now()
	ran, err := s.st.RefreshStats(ctx, s.now(), full)
	if err == nil && ran && time.Since(start) > 2*time.Second {
		s.log.Info("dashboard rollups refreshed", "full", full, "took", time.Since(start).Round(time.Millisecond))
	}
	start = time.Now()
	rerr := s.cfg.RefreshReports(ctx, s.now(), full)
	if rerr == nil && time.Since(start) > 2*time.Second {
		s.log.Info("reports refreshed", "full", full, "took", time.Since(start).Round(time.Millisecond))
	}
	return errors.Join(err, rerr)
}

// limiter is a token bucket per API key, shared by the key's API calls
// and its dashboard sessions.
type limiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	now     func() time.Time
	buckets map[int64]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: burst, now: now, buckets: map[int64]*bucket{}}
}

// allow takes a token for key, or says how long until one is available.
func (l *limiter) allow(key int64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// JSON answers.

// apiError is the body of every 4xx and 5xx answer of the API.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fieldError(w http.ResponseWriter, code int, field, format string, args ...any) {
	writeJSON(w, code, apiError{Error: fmt.Sprintf(format, args...), Field: field})
}

// internal logs err once and answers 500 (503 when the database is gone)
// without details.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.log.Error("management API", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal error (logged)"})
}

// decode reads a JSON body into v: 413 over MaxBody, 400 naming the field
// for a wrong type or an unknown field.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		if f := badField(v); f != "" {
			fieldError(w, http.StatusBadRequest, f, "%s: contains a NUL character", f)
			return false
		}
		return true
	}
	var (
		tooBig  *http.MaxBytesError
		typeErr *json.UnmarshalTypeError
		syntax  *json.SyntaxError
	)
	switch {
	case errors.As(err, &tooBig):
		fieldError(w, http.StatusRequestEntityTooLarge, "", "request body over %d bytes", tooBig.Limit)
	case errors.As(err, &typeErr):
		fieldError(w, http.StatusBadRequest, typeErr.Field, "%s: must be %s, not %s", typeErr.Field, typeErr.Type.String(), typeErr.Value)
	case errors.As(err, &syntax):
		fieldError(w, http.StatusBadRequest, "", "invalid JSON at byte %d: %v", syntax.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		fieldError(w, http.StatusBadRequest, f, "%s: unknown field", f)
	case errors.Is(err, context.Canceled):
	default:
		fieldError(w, http.StatusBadRequest, "", "invalid JSON body: %v", err)
	}
	return false
}

// limitParam reads ?limit= (1..500, default 50).
func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		return 0, fmt.Errorf("limit: must be a whole number from 1 to 500, not %q", v)
	}
	return n, nil
}

// dayParam reads a YYYY-MM-DD query parameter.
func dayParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: must be a date YYYY-MM-DD, not %q", name, v)
	}
	return t, nil
}

// period reads ?from=&to= (to exclusive; default the last 30 days,
// today included).
func (s *Server) period(r *http.Request, fromName, toName string, days int, shift int) (stats.Period, string, error) {
	today := s.now().UTC().Truncate(24 * time.Hour)
	defTo := today.AddDate(0, 0, 1-shift)
	to, err := dayParam(r, toName, defTo)
	if err != nil {
		return stats.Period{}, toName, err
	}
	from, err := dayParam(r, fromName, to.AddDate(0, 0, -days))
	if err != nil {
		return stats.Period{}, fromName, err
	}
	if !from.Before(to) {
		return stats.Period{}, fromName, fmt.Errorf("%s: must be before %s", fromName, toName)
	}
	if to.Sub(from) > 3*366*24*time.Hour {
		return stats.Period{}, fromName, fmt.Errorf("%s: a period spans at most 3 years", fromName)
	}
	return stats.Period{From: from, To: to}, "", nil
}
