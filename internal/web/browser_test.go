package web_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/web"
)

// browser drives headless Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on fd 3, answers on fd 4, each a JSON
// message ended by a NUL byte), so no WebSocket library or driver is
// needed.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	in      io.WriteCloser
	out     *bufio.Reader
	id      int
	session string
}

func chromiumPath() string {
	for _, p := range []string{os.Getenv("WAYMARK_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not found (apt-get install chromium; .ci/run installs it)")
		}
		t.Skip("chromium not found; install it with apt-get install chromium")
	}
	toBrowser, cmdIn, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmdOut, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
		"--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--user-data-dir="+t.TempDir(), "about:blank")
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser} // fd 3, fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	b := &browser{t: t, cmd: cmd, in: cmdIn, out: bufio.NewReader(cmdOut)}
	t.Cleanup(func() {
		// Close gracefully, then make sure the whole process group (the
		// renderer and helper processes too) is gone before the profile
		// directory is removed.
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		msg, _ := json.Marshal(map[string]any{"id": 1 << 30, "method": "Browser.close"})
		_, _ = cmdIn.Write(append(msg, 0))
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		cmdIn.Close()
	})
	var target struct{ TargetID string }
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct{ SessionID string }
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	b.call(b.session, "Page.enable", nil, nil)
	b.call(b.session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	return b
}

// call sends one command and waits for its answer (events are skipped).
func (b *browser) call(session, method string, params any, result any) {
	b.t.Helper()
	if err := b.try(session, method, params, result); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
}

// try is call that returns the browser's refusal of a command as an error
// instead of failing the test; a broken pipe still fails it.
func (b *browser) try(session, method string, params any, result any) error {
	b.t.Helper()
	b.id++
	msg := map[string]any{"id": b.id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
	deadline := time.AfterFunc(30*time.Second, func() { _ = b.cmd.Process.Kill() })
	defer deadline.Stop()
	for {
		line, err := b.out.ReadBytes(0)
		if err != nil {
			b.t.Fatalf("%s: reading from chromium: %v", method, err)
		}
		var m struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct{ Message string }
		}
		if err := json.Unmarshal(line[:len(line)-1], &m); err != nil {
			b.t.Fatalf("%s: %v", method, err)
		}
		if m.ID != b.id {
			continue
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				b.t.Fatalf("%s: %v", method, err)
			}
		}
		return nil
	}
}

// eval runs JavaScript in the page and decodes its (JSON-able) value.
func (b *browser) eval(js string, out any) {
	b.t.Helper()
	if err := b.tryEval(js, out); err != nil {
		b.t.Fatalf("Runtime.evaluate: %v", err)
	}
}

// navigating reports whether the browser refused an evaluation because the
// page it was sent to is being replaced (a form submission or a redirect
// in flight); the evaluation can be sent again to the new page.
func navigating(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "navigated or closed") || strings.Contains(msg, "context was destroyed") ||
		strings.Contains(msg, "Cannot find context")
}

// tryEval is eval that returns the browser's refusal to evaluate as an
// error; an exception thrown by the script still fails the test.
func (b *browser) tryEval(js string, out any) error {
	b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := b.try(b.session, "Runtime.evaluate", map[string]any{"expression": js, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		msg := r.ExceptionDetails.Text
		if r.ExceptionDetails.Exception != nil {
			msg = r.ExceptionDetails.Exception.Description
		}
		b.t.Fatalf("evaluating %q: %s", js, msg)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("evaluating %q: %v (value %s)", js, err, r.Result.Value)
		}
	}
	return nil
}

// waitFor polls a JavaScript condition until it is true. A poll that
// reaches the page while it navigates counts as false: the condition is
// usually waiting for exactly that navigation to finish.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var ok bool
		err := b.tryEval("(function(){ try { return !!("+js+") } catch (e) { return false } })()", &ok)
		if err != nil && !navigating(err) {
			b.t.Fatalf("waiting for %s: Runtime.evaluate: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			b.eval("location.href + '\\n' + document.body.innerText.slice(0, 2000)", &html)
			b.t.Fatalf("waiting for %s (%s); page: %s", what, js, html)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// open navigates and waits for the page at path to have loaded.
func (b *browser) open(url, path string) {
	b.t.Helper()
	b.call(b.session, "Page.navigate", map[string]any{"url": url}, nil)
	b.waitFor("page "+path, fmt.Sprintf("document.readyState === 'complete' && location.pathname === %q", path))
}

// screenshot saves the whole page as PNG.
func (b *browser) screenshot(file string) {
	b.t.Helper()
	var r struct{ Data string }
	b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(png) < 1000 {
		b.t.Fatalf("screenshot %s: %d bytes, %v", file, len(png), err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// The dashboard in a real browser: log in with a key, read the overview,
// a contact's journey and the rule editor, check the condition as one
// types, dry-run and save a rule edit — each time against the database.
// With WAYMARK_SCREENSHOTS=DIR the overview and the journey are saved
// there (docs/ holds the ones the README describes).
func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	f := newFixture(t, web.Config{})
	ctx := context.Background()
	b := newBrowser(t)
	shots := os.Getenv("WAYMARK_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	// Not logged in: the login form, then the overview.
	b.open(f.srv.URL+"/dashboard/", "/dashboard/login")
	b.eval(fmt.Sprintf(`document.getElementById("key").value = %q; document.getElementById("login").click(); true`, "wrong"), nil)
	b.waitFor("the refusal", `document.querySelector(".error") && document.querySelector(".error").textContent.includes("not valid")`)
	b.eval(fmt.Sprintf(`document.getElementById("key").value = %q; document.getElementById("login").click(); true`, f.key), nil)
	b.waitFor("the overview", `location.pathname === "/dashboard/" && document.readyState === "complete" && document.getElementById("stages")`)

	// The session cookie is HttpOnly and SameSite=Strict.
	var cookies struct {
		Cookies []struct {
			Name     string
			HTTPOnly bool `json:"httpOnly"`
			SameSite string
		}
	}
	b.call(b.session, "Network.getCookies", map[string]any{"urls": []string{f.srv.URL + "/dashboard/"}}, &cookies)
	if len(cookies.Cookies) != 1 || !cookies.Cookies[0].HTTPOnly || cookies.Cookies[0].SameSite != "Strict" {
		t.Errorf("session cookie %+v, want one, HttpOnly, SameSite=Strict", cookies.Cookies)
	}
	var jsCookie string
	b.eval(`document.cookie`, &jsCookie)
	if jsCookie != "" {
		t.Errorf("the session cookie is readable from JavaScript: %q", jsCookie)
	}

	// Overview: contacts per stage and the moves, as in the database.
	var stages map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll("#stages tbody tr")].map(r => [r.dataset.stage, r.cells[1].textContent]))`, &stages)
	want := map[string]string{}
	rows, err := f.pool.Query(ctx, `SELECT s, (SELECT count(*) FROM contacts WHERE stage = s AND merged_into IS NULL)::text
		FROM unnest(ARRAY['awareness','consideration','decision','retention','advocacy']) s`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s, n string
		_ = rows.Scan(&s, &n)
		want[s] = n
	}
	if fmt.Sprint(stages) != fmt.Sprint(want) || want["decision"] != "1" {
		t.Errorf("overview stages %v, database %v", stages, want)
	}
	var flows map[string]string
	b.eval(`Object.fromEntries([...document.querySelectorAll("#flows tbody tr[data-from]")].map(r => [r.dataset.from + ">" + r.dataset.to, r.cells[2].textContent]))`, &flows)
	var dbFlows string
	if err := f.pool.QueryRow(ctx, `SELECT string_agg(from_stage || '>' || to_stage || ':' || n, ' ' ORDER BY from_stage, to_stage)
		FROM (SELECT from_stage, to_stage, count(*) n FROM transitions GROUP BY 1, 2) x`).Scan(&dbFlows); err != nil {
		t.Fatal(err)
	}
	var shown []string
	for k, v := range flows {
		shown = append(shown, k+":"+v)
	}
	if strings.Join(sorted(shown), " ") != dbFlows {
		t.Errorf("overview flows %v, database %s", shown, dbFlows)
	}
	var svgs int
	b.eval(`document.querySelectorAll("svg.chart").length`, &svgs)
	if svgs != 3 {
		t.Errorf("%d SVG charts on the overview, want 3 (funnel, flows, emails)", svgs)
	}
	b.screenshot(filepath.Join(shots, "dashboard-overview.png"))

	// A contact's journey: the stage, each move with its rule, the email
	// with its tone and opens.
	b.open(fmt.Sprintf("%s/dashboard/contacts/%d", f.srv.URL, f.ann), fmt.Sprintf("/dashboard/contacts/%d", f.ann))
	var page struct {
		Stage string
		Moves []string
		Rules []string
		Email string
	}
	b.eval(`({stage: document.getElementById("stage").textContent,
		moves: [...document.querySelectorAll("#timeline li.move .move-text")].map(e => e.textContent),
		rules: [...document.querySelectorAll("#timeline li.move a.rule")].map(e => e.textContent),
		email: (document.querySelector("#timeline li.email") || {}).textContent || ""})`, &page)
	var dbStage, dbMoves, dbRules string
	if err := f.pool.QueryRow(ctx, `SELECT c.stage, string_agg(t.from_stage || ' → ' || t.to_stage, '|' ORDER BY t.seq DESC), string_agg(t.rule, '|' ORDER BY t.seq DESC)
		FROM contacts c JOIN transitions t ON t.contact_id = c.id WHERE c.id = $1 GROUP BY c.stage`, f.ann).Scan(&dbStage, &dbMoves, &dbRules); err != nil {
		t.Fatal(err)
	}
	if page.Stage != dbStage || strings.Join(page.Moves, "|") != dbMoves || strings.Join(page.Rules, "|") != dbRules {
		t.Errorf("journey shows stage %q moves %q rules %q; database %q %q %q", page.Stage, page.Moves, page.Rules, dbStage, dbMoves, dbRules)
	}
	if !strings.Contains(page.Email, "welcome") || !strings.Contains(page.Email, "friendly") || !strings.Contains(page.Email, "2 opens") {
		t.Errorf("journey email line %q, want template welcome, tone friendly, 2 opens", page.Email)
	}
	b.screenshot(filepath.Join(shots, "dashboard-journey.png"))

	// The rule editor: errors with position as one types, a dry run, a
	// save that bumps the version.
	b.open(f.srv.URL+"/dashboard/rules/visitor", "/dashboard/rules/visitor")
	b.eval(`const w = document.getElementById("when"); w.value = 'count("page_viewed", "14x") >= 1'; w.dispatchEvent(new Event("input")); true`, nil)
	b.waitFor("the compile error", `document.getElementById("compile").className === "error" && document.getElementById("compile").textContent.startsWith("line 1, column 22")`)
	b.eval(`const w2 = document.getElementById("when"); w2.value = 'count("page_viewed", "all") >= 0'; w2.dispatchEvent(new Event("input")); true`, nil)
	b.waitFor("the condition to compile", `document.getElementById("compile").className === "ok"`)
	b.eval(`document.getElementById("dry-run").click(); true`, nil)
	b.waitFor("the dry run", `document.getElementById("dryrun-summary")`)
	var summary string
	b.eval(`document.getElementById("dryrun-summary").textContent`, &summary)
	if summary != "visitor would move 1 contacts from awareness to consideration" {
		t.Errorf("dry run says %q, want carol (the one contact in awareness) moved", summary)
	}
	var v int
	if err := f.pool.QueryRow(ctx, `SELECT version FROM rules WHERE name = 'visitor'`).Scan(&v); err != nil || v != 1 {
		t.Fatalf("the dry run changed the rule: version %d, %v", v, err)
	}
	b.eval(`document.getElementById("save").click(); true`, nil)
	b.waitFor("the saved rule", `document.getElementById("saved") && document.readyState === "complete"`)
	var shownVersion, shownWhen string
	b.eval(`document.getElementById("rule-version").textContent`, &shownVersion)
	b.eval(`document.getElementById("when").value`, &shownWhen)
	var cond string
	var versions int
	if err := f.pool.QueryRow(ctx, `SELECT version, condition, (SELECT count(*) FROM rule_versions WHERE name = 'visitor') FROM rules WHERE name = 'visitor'`).Scan(&v, &cond, &versions); err != nil {
		t.Fatal(err)
	}
	if v != 2 || versions != 2 || cond != `count("page_viewed", "all") >= 0` || shownVersion != "2" || shownWhen != cond {
		t.Errorf("after saving: database version %d (%d versions) %q; page shows version %s %q", v, versions, cond, shownVersion, shownWhen)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
