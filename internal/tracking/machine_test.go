package tracking

import (
	"net/http/httptest"
	"testing"
	"time"
)

func TestMachine(t *testing.T) {
	t.Parallel()
	const (
		chrome = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
		gmail  = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
	)
	sent := t0.Add(-time.Hour)
	for _, tc := range []struct {
		name   string
		kind   Kind
		method string
		ua     string
		remote string
		sentAt time.Time
		now    time.Time
		want   bool
	}{
		{"a person opening an hour later", Open, "GET", chrome, "203.0.113.9:4000", sent, t0, false},
		{"a person clicking an hour later", Click, "GET", chrome, "203.0.113.9:4000", sent, t0, false},
		{"Gmail's proxy on a real open", Open, "GET", gmail, "66.249.84.1:4000", sent, t0, false},
		{"Gmail's proxy at delivery", Open, "GET", gmail, "66.249.84.1:4000", t0.Add(-3 * time.Second), t0, true},
		{"an open 2 s after sending", Open, "GET", chrome, "203.0.113.9:4000", t0.Add(-2 * time.Second), t0, true},
		{"a click 5 s after sending", Click, "GET", chrome, "203.0.113.9:4000", t0.Add(-5 * time.Second), t0, true},
		{"sent time unknown", Open, "GET", chrome, "203.0.113.9:4000", time.Time{}, t0, false},
		{"HEAD", Click, "HEAD", chrome, "203.0.113.9:4000", sent, t0, true},
		{"no user agent", Open, "GET", "", "203.0.113.9:4000", sent, t0, true},
		{"Apple MPP user agent", Open, "GET", "Mozilla/5.0", "104.28.1.1:4000", sent, t0, true},
		{"Apple network", Open, "GET", chrome, "17.58.1.2:4000", sent, t0, true},
		{"Apple network, click", Click, "GET", chrome, "17.58.1.2:4000", sent, t0, false},
		{"Apple IPv6 network", Open, "GET", chrome, "[2a01:b740:a42::1]:4000", sent, t0, true},
		{"IPv4-mapped Apple address", Open, "GET", chrome, "[::ffff:17.1.2.3]:4000", sent, t0, true},
		{"another IPv6 address", Open, "GET", chrome, "[2001:db8::1]:4000", sent, t0, false},
		{"Proofpoint", Click, "GET", "Mozilla/5.0 ppops-1234 Proofpoint URL Defense", "203.0.113.9:4000", sent, t0, true},
		{"Mimecast", Click, "GET", "Mimecast-URL-Protect/1.0", "203.0.113.9:4000", sent, t0, true},
		{"Barracuda", Click, "GET", "Mozilla/5.0 (compatible; BarracudaCentral)", "203.0.113.9:4000", sent, t0, true},
		{"Yahoo proxy", Open, "GET", "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "203.0.113.9:4000", sent, t0, true},
		{"curl", Click, "GET", "curl/8.5.0", "203.0.113.9:4000", sent, t0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/o/x", nil)
			r.Header.Set("User-Agent", tc.ua)
			if tc.ua == "" {
				r.Header.Del("User-Agent")
			}
			r.RemoteAddr = tc.remote
			got, why := Machine(tc.kind, r, tc.sentAt, tc.now, 0)
			if got != tc.want {
				t.Errorf("Machine = %v (%s), want %v", got, why, tc.want)
			}
			if got && why == "" {
				t.Error("no reason given")
			}
		})
	}
}
