package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/tracking"
)

// A client that sends its headers slowly (or never finishes them) is cut
// off by the server's ReadHeaderTimeout, and other clients are served
// meanwhile.
func TestSlowClientsAreCutOff(t *testing.T) {
	t.Parallel()
	base, _ := startServeWith(t, "", nil)
	addr := strings.TrimPrefix(base, "http://")
	cut := func(name string, trickle bool) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "POST /v1/track HTTP/1.1\r\nHost: waymark\r\n"); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() {
			// Read until the server closes the connection.
			_, err := io.Copy(io.Discard, conn)
			closed <- err
		}()
		// Generous: the server's header timeout is 5 s. This bounds the
		// test, it does not measure the server.
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-closed:
				return
			case <-deadline:
				t.Errorf("%s: the server kept a connection whose headers never ended open for 30 s", name)
				return
			case <-tick.C:
				if trickle {
					// One more header line every half second: a slowloris.
					_, _ = io.WriteString(conn, "X-Slow-"+strconv.Itoa(i)+": 1\r\n")
				}
			}
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); cut("silent client", false) }()
	cut("slowloris", true)
	<-done
	// Meanwhile and after, a normal client is served.
	if code := postJSON(t, base, "/v1/track", `{"userId":"ann","event":"page_viewed","messageId":"m1"}`); code != 200 {
		t.Fatalf("a normal request after the slow ones: %d", code)
	}
}

// Guessing gets nothing: a forged link naming a contact that exists gets
// exactly the answer a forged link naming no contact gets, and changes
// nothing; management and dashboard paths answer an unauthenticated
// request for an existing id exactly as for a missing one.
func TestGuessedIDsRevealNothing(t *testing.T) {
	t.Parallel()
	base, pool := startServeWith(t, "", map[string]string{"WAYMARK_SECRET": "the-real-secret-of-this-test"})
	if code := postJSON(t, base, "/v1/identify", `{"userId":"ann","traits":{"email":"ann@example.com"},"messageId":"i1"}`); code != 200 {
		t.Fatalf("identify: %d", code)
	}
	var ann int64
	if err := pool.QueryRow(context.Background(), `SELECT id FROM contacts WHERE user_id = 'ann'`).Scan(&ann); err != nil {
		t.Fatal(err)
	}
	missing := ann + 1000
	forger, err := tracking.NewSigner("a-guess-at-the-secret-0000")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	answer := func(method, path, body string, header map[string]string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.ReplaceAll(res.Header.Get("Location")+"\n"+string(b), strconv.FormatInt(missing, 10), strconv.FormatInt(ann, 10))
	}
	links := []struct {
		kind         tracking.Kind
		method, path string
		body         string
	}{
		{tracking.Unsubscribe, "GET", "/u/", ""},
		{tracking.Unsubscribe, "POST", "/u/", "List-Unsubscribe=One-Click"},
		{tracking.Preferences, "GET", "/preferences/", ""},
		{tracking.Preferences, "POST", "/preferences/", "action=unsubscribe"},
		{tracking.Open, "GET", "/o/", ""},
		{tracking.Click, "GET", "/c/", ""},
	}
	for _, l := range links {
		tok := func(contact int64) string {
			t := tracking.Token{Kind: l.kind, ContactID: contact, SendID: 1}
			if l.kind == tracking.Click {
				t.URL = "https://evil.example/"
			}
			return forger.Sign(t)
		}
		c1, b1 := answer(l.method, l.path+tok(ann), l.body, nil)
		c2, b2 := answer(l.method, l.path+tok(missing), l.body, nil)
		if c1 != c2 || b1 != b2 {
			t.Errorf("%s %s: a forged link for an existing contact answers %d, for a missing one %d (bodies equal: %v)", l.method, l.path, c1, c2, b1 == b2)
		}
		if c1 < 400 {
			t.Errorf("%s %s with a forged link: %d, want it refused", l.method, l.path, c1)
		}
		if strings.Contains(b1, "evil.example") {
			t.Errorf("%s %s: a forged click link redirects to its URL", l.method, l.path)
		}
	}
	var status string
	var events int
	_ = pool.QueryRow(context.Background(), `SELECT status FROM contacts WHERE id = $1`, ann).Scan(&status)
	_ = pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE name LIKE 'email_%'`).Scan(&events)
	if status != "subscribed" || events != 0 {
		t.Fatalf("forged links changed something: contact %q, %d email events", status, events)
	}

	// Without a key, an existing id and a missing one look the same.
	for _, p := range []string{"/api/v1/contacts/%d", "/api/v1/contacts/%d/timeline", "/dashboard/contacts/%d"} {
		path := func(id int64) string { return strings.Replace(p, "%d", strconv.FormatInt(id, 10), 1) }
		c1, b1 := answer("GET", path(ann), "", nil)
		c2, b2 := answer("GET", path(missing), "", nil)
		// answer wrote the missing id as ann's: only the path itself, which
		// the login redirect carries back, may differ.
		for _, b := range []*string{&b1, &b2} {
			*b = strings.ReplaceAll(strings.ReplaceAll(*b, url.QueryEscape(path(ann)), ""), path(ann), "")
		}
		if c1 != c2 || b1 != b2 {
			t.Errorf("GET %s without a key: %d for an existing id, %d for a missing one:\n%s\n---\n%s", p, c1, c2, b1, b2)
		}
		if c1 == 200 {
			t.Errorf("GET %s without a key: 200", p)
		}
		// A wrong key, the same.
		c3, _ := answer("GET", path(ann), "", map[string]string{"Authorization": "Bearer wmk_guess_0000"})
		if strings.HasPrefix(p, "/api/") && c3 != 401 {
			t.Errorf("GET %s with a wrong key: %d, want 401", p, c3)
		}
	}
}
