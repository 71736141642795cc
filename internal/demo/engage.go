package demo

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/capture"
)

// The simulated customers read some of the emails Waymark sends them: a
// few hours later they open one (the tracking pixel is fetched), sometimes
// click a link, and now and then unsubscribe (RFC 8058 one-click) — all
// through Waymark's real tracking endpoints, at the simulated instant.

// engagement is one thing a customer will do with an email.
type engagement struct {
	at   time.Time
	kind string // open, click, unsubscribe
	url  string
}

// rates are the chances, by persona, that an email is opened, that an
// opened one is clicked, and that an email makes its reader unsubscribe.
var rates = map[Persona][3]float64{
	Browser:      {0.22, 0.12, 0.008},
	OneTimeBuyer: {0.35, 0.15, 0.004},
	Loyal:        {0.62, 0.30, 0.001},
	Lapsed:       {0.15, 0.10, 0.010},
	Question:     {0.45, 0.12, 0.003},
	Complainer:   {0.40, 0.08, 0.015},
}

const browserUA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"

var (
	pixelRE = regexp.MustCompile(`(?:src|background)="(https?://[^"]+/o/[^"]+)"`)
	clickRE = regexp.MustCompile(`href="(https?://[^"]+/c/[^"]+)"`)
	unsubRE = regexp.MustCompile(`<(https?://[^>]+/u/[^>]+)>`)
)

// reader plays the readers of the captured mail.
type reader struct {
	box     *capture.Server
	seen    int64 // the last captured message looked at
	persona map[string]Persona
	seed    uint64
	queue   []engagement // by time
	client  *http.Client
}

func newReader(box *capture.Server, pop *Population, seed uint64) *reader {
	r := &reader{box: box, persona: map[string]Persona{}, seed: seed,
		client: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for _, c := range pop.Contacts {
		r.persona[strings.ToLower(c.Email)] = c.Persona
	}
	return r
}

// chance is a reproducible number in [0, 1) for a message and a purpose.
func (r *reader) chance(id, what string) float64 {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s\x00%s", r.seed, id, what)))
	return float64(binary.BigEndian.Uint64(h[:8])>>11) / float64(uint64(1)<<53)
}

// look reads the newly captured mail and plans what its readers will do.
func (r *reader) look(now time.Time) {
	for _, m := range r.box.Since(r.seen, 0) {
		r.seen = m.ID
		p, ok := r.persona[strings.ToLower(firstAddress(m.EnvelopeTo))]
		if !ok {
			continue
		}
		rate := rates[p]
		sent := m.Date
		if sent.IsZero() || sent.After(now) {
			sent = now
		}
		delay := func(what string, lo, hi time.Duration) time.Duration {
			return lo + time.Duration(r.chance(m.MessageID, what)*float64(hi-lo))
		}
		if u := unsubRE.FindStringSubmatch(m.Header.Get("List-Unsubscribe")); u != nil && r.chance(m.MessageID, "unsubscribe") < rate[2] {
			r.add(engagement{at: sent.Add(delay("unsubscribe-at", 30*time.Minute, 30*time.Hour)), kind: "unsubscribe", url: u[1]})
			continue
		}
		px := pixelRE.FindStringSubmatch(m.HTML)
		if px == nil || r.chance(m.MessageID, "open") >= rate[0] {
			continue
		}
		opened := sent.Add(delay("open-at", 20*time.Minute, 40*time.Hour))
		r.add(engagement{at: opened, kind: "open", url: px[1]})
		if links := clickRE.FindAllStringSubmatch(m.HTML, -1); len(links) > 0 && r.chance(m.MessageID, "click") < rate[1] {
			l := links[int(r.chance(m.MessageID, "which")*float64(len(links)))]
			r.add(engagement{at: opened.Add(delay("click-at", 10*time.Second, 3*time.Minute)), kind: "click", url: l[1]})
		}
	}
}

func (r *reader) add(e engagement) {
	i, _ := slices.BinarySearchFunc(r.queue, e.at, func(x engagement, t time.Time) int { return x.at.Compare(t) })
	r.queue = slices.Insert(r.queue, i, e)
}

// act does what is due by now; it returns how many requests it made.
func (r *reader) act(ctx context.Context, now time.Time) (int, error) {
	n := 0
	for len(r.queue) > 0 && !r.queue[0].at.After(now) {
		e := r.queue[0]
		r.queue = r.queue[1:]
		method, body := http.MethodGet, io.Reader(nil)
		if e.kind == "unsubscribe" {
			method, body = http.MethodPost, strings.NewReader("List-Unsubscribe=One-Click")
		}
		req, err := http.NewRequestWithContext(ctx, method, e.url, body)
		if err != nil {
			return n, err
		}
		req.Header.Set("User-Agent", browserUA)
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := r.client.Do(req)
		if err != nil {
			return n, fmt.Errorf("demo: a reader's %s: %w", e.kind, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			// A link Waymark no longer honours (expired, say): the reader
			// shrugs, as a person would.
			continue
		}
		n++
	}
	return n, nil
}

func firstAddress(to []string) string {
	if len(to) == 0 {
		return ""
	}
	if a, err := mail.ParseAddress(to[0]); err == nil {
		return a.Address
	}
	return to[0]
}
