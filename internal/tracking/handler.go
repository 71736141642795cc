package tracking

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Store is what the handler needs from storage.
type Store interface {
	// Unsubscribe unsubscribes a contact at once: status 'unsubscribed',
	// the address suppressed ('unsubscribed'), queued sends cancelled,
	// active enrolments exited, an 'unsubscribed' event recorded (once:
	// not again when the contact already was unsubscribed). sendID is
	// the send whose link was used. It returns the contact unsubscribed:
	// contactID, or the contact it was merged into.
	Unsubscribe(ctx context.Context, contactID, sendID int64, at time.Time) (int64, error)
	// Resubscribe sets the contact's status back to 'subscribed' and
	// removes the address's 'unsubscribed' suppression (never a
	// hard_bounce, complaint, manual or erased one); it returns the
	// contact, as Unsubscribe does.
	Resubscribe(ctx context.Context, contactID int64, at time.Time) (int64, error)
	// ContactEmail returns a contact's address, status ('subscribed' or
	// 'unsubscribed') and the reason its address is suppressed for other
	// than unsubscribing ("" if it is not); ErrNotFound if there is no
	// such contact.
	ContactEmail(ctx context.Context, id int64) (email, status, blocked string, err error)
	// TrackEngagement records event name for the contact, with props and
	// the send's sequence, step and template, and returns the contact it
	// was recorded on (as Unsubscribe does); ErrNotFound if there is no
	// such contact (any more).
	TrackEngagement(ctx context.Context, contactID, sendID int64, name string, props map[string]any, at time.Time) (int64, error)
	// Suppress adds email to the suppression list with reason and detail,
	// cancels the queued sends to it and ends its contacts' active
	// enrolments; it returns how many sends it cancelled.
	Suppress(ctx context.Context, email, reason, detail string) (cancelled int, err error)
	// SentAt returns when the send went on the wire (zero if not yet);
	// ErrNotFound if there is no such send.
	SentAt(ctx context.Context, contactID, sendID int64) (time.Time, error)
	// CheckAPIKey says whether key is a management API key that is known
	// and not revoked, and whether it is read-only; err only when it
	// cannot be checked.
	CheckAPIKey(ctx context.Context, key string) (known, readOnly bool, err error)
}

// ErrNotFound is what a Store returns for a contact or send that does not
// exist.
var ErrNotFound = errors.New("not found")

// Event names the handler records.
const (
	EventOpened         = "email_opened"
	EventClicked        = "email_clicked"
	EventOpenedMachine  = "email_opened_machine"
	EventClickedMachine = "email_clicked_machine"
	EventUnsubscribed   = "unsubscribed"
	EventResubscribed   = "resubscribed"
)

// Suppression reasons the API and webhook accept.
var apiReasons = map[string]bool{"manual": true, "complaint": true, "hard_bounce": true}

// Handler serves the links in emails and the suppression API:
//
//	GET  /u/TOKEN              confirmation page with a button; changes nothing
//	POST /u/TOKEN              RFC 8058 one-click unsubscribe: at once, 200
//	GET  /preferences/TOKEN    preferences page
//	POST /preferences/TOKEN    action=unsubscribe|resubscribe and the page's
//	                           form token, then 303 back
//	GET  /o/TOKEN              1x1 GIF; records email_opened(_machine)
//	GET  /c/TOKEN              302 to the signed URL; records email_clicked(_machine)
//	POST /v1/suppressions      {"email","reason","detail"}, a management API key
//	POST /v1/webhooks/bounces  {"type","email","bounce_type","diagnostic"}, same key
//
// The two /v1/ endpoints take a management API key that is not read-only
// (Authorization: Bearer KEY, or the key as the HTTP Basic user name or
// password), never the ingestion write key: clients ship that one inside
// browser and app code, and anyone holding it could suppress any address.
// Their answers say nothing about other contacts (not whether mail was
// queued to the address).
//
// The token in the path is the capability: no cookies, no login, so there
// is no ambient authority for a cross-site request to ride on. The pages
// change state only on POST; the preferences form must also carry a form
// token bound to the link (FormToken), and a browser's cross-site POST
// (Sec-Fetch-Site: cross-site, or an Origin of another host) is refused.
// The one-click POST takes neither: RFC 8058 has mailbox providers POST
// it from their servers.
type Handler struct {
	signer *Signer
	store  Store
	mux    *http.ServeMux
	opts   Options
}

// Options are a Handler's settings besides its signer and store.
type Options struct {
	// WriteKey is the ingestion write key, which the /v1/ endpoints
	// refuse with a message saying so.
	WriteKey string
	Log      *slog.Logger
	Now      func() time.Time
	// MachineWindow: hits this soon after sending are machines'
	// (DefaultMachineWindow if 0).
	MachineWindow time.Duration
	// OnEvent, if set, is called after an engagement event or an
	// unsubscription is stored (e.g. to let rules react at once); name is
	// the stored event's name.
	OnEvent func(contactID int64, name string, props map[string]any, at time.Time)
	// Reports, if set, records each checked event of the bounce webhook
	// as a delivery report (an event on the contact, soft bounces
	// counted, once per id) instead of suppressing the address directly;
	// email is the normalised address. It says whether the address was
	// suppressed.
	Reports func(ctx context.Context, b BounceWebhook, email string) (suppressed bool, err error)
}

// Event properties the handler adds.
const (
	// PropMachine is true on email_opened_machine and
	// email_clicked_machine events, and PropMachineReason says which
	// heuristic flagged the hit.
	PropMachine       = "machine"
	PropMachineReason = "machine_reason"
)

// NewHandler returns the handler.
func NewHandler(signer *Signer, store Store, opts Options) *Handler {
	h := &Handler{signer: signer, store: store, mux: http.NewServeMux(), opts: opts}
	h.mux.HandleFunc("GET /u/{token}", h.unsubscribePage)
	h.mux.HandleFunc("POST /u/{token}", h.unsubscribe)
	h.mux.HandleFunc("GET /preferences/{token}", h.preferencesPage)
	h.mux.HandleFunc("POST /preferences/{token}", h.preferences)
	h.mux.HandleFunc("GET /o/{token}", h.open)
	h.mux.HandleFunc("GET /c/{token}", h.click)
	h.mux.HandleFunc("POST /v1/suppressions", h.suppressions)
	h.mux.HandleFunc("POST /v1/webhooks/bounces", h.bounces)
	return h
}

// Patterns are the http.ServeMux patterns the handler answers, to mount
// it on another mux: for _, p := range h.Patterns() { mux.Handle(p, h) }.
func (h *Handler) Patterns() []string {
	return []string{"/u/", "/preferences/", "/o/", "/c/", "POST /v1/suppressions", "POST /v1/webhooks/bounces"}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// --- pages ---

var pages = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font-family:system-ui,-apple-system,Segoe UI,Arial,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2937;line-height:1.5}
button{font:inherit;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #1f2937;background:#1f2937;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f2937}.note{color:#6b7280;font-size:.9rem}</style></head>
<body><h1>{{.Title}}</h1>
{{range .Paragraphs}}<p>{{.}}</p>
{{end}}{{range .Forms}}<form method="post">{{if .Name}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}{{if .CSRF}}<input type="hidden" name="form_token" value="{{.CSRF}}">{{end}}<button type="submit"{{if .Secondary}} class="secondary"{{end}}>{{.Label}}</button></form>
{{end}}{{if .Link}}<p class="note"><a href="{{.Link}}">{{.LinkLabel}}</a></p>{{end}}
</body></html>
`))

// form posts to the page's own URL (no action attribute), so the pages
// work under any path prefix.
type form struct {
	Name, Value, Label string
	CSRF               string // the form token, for the preferences form
	Secondary          bool
}

type page struct {
	Title      string
	Paragraphs []string
	Forms      []form
	Link       string
	LinkLabel  string
}

func (h *Handler) render(w http.ResponseWriter, status int, p page) {
	var b bytes.Buffer
	if err := pages.Execute(&b, p); err != nil {
		h.opts.Log.Error("rendering a page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Robots-Tag", "noindex")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// badLink answers a refused token with a clear page.
func (h *Handler) badLink(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrExpired):
		h.render(w, http.StatusForbidden, page{Title: "This link has expired",
			Paragraphs: []string{"The link you followed is too old to use. The unsubscribe and preferences links in any recent email from us will work."}})
	case errors.Is(err, ErrKind):
		h.render(w, http.StatusBadRequest, page{Title: "This link is not valid here",
			Paragraphs: []string{"The link you followed was made for another page. Please use the link exactly as it appears in the email."}})
	default:
		h.render(w, http.StatusBadRequest, page{Title: "This link is not valid",
			Paragraphs: []string{"The link you followed is incomplete or has been changed. Please use the link exactly as it appears in the email, or copy the whole of it into your browser."}})
	}
}

func (h *Handler) unavailable(w http.ResponseWriter, doing string, err error) {
	h.opts.Log.Error(doing, "err", err)
	h.render(w, http.StatusServiceUnavailable, page{Title: "Please try again",
		Paragraphs: []string{"Something went wrong on our side and nothing was changed. Please try again in a few minutes."}})
}

// --- unsubscribe ---

func (h *Handler) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	t, err := h.signer.Verify(Unsubscribe, r.PathValue("token"), h.opts.Now())
	if err != nil {
		h.badLink(w, err)
		return
	}
	email, status, _, err := h.store.ContactEmail(r.Context(), t.ContactID)
	if errors.Is(err, ErrNotFound) {
		h.render(w, http.StatusNotFound, page{Title: "Nothing to unsubscribe", Paragraphs: []string{"We no longer have this address on file."}})
		return
	}
	if err != nil {
		h.unavailable(w, "loading a contact for the unsubscribe page", err)
		return
	}
	prefs := h.preferencesPath(t)
	if status == "unsubscribed" {
		h.render(w, http.StatusOK, page{Title: "You are unsubscribed",
			Paragraphs: []string{fmt.Sprintf("%s no longer receives our marketing emails.", display(email))},
			Link:       prefs, LinkLabel: "Email preferences"})
		return
	}
	h.render(w, http.StatusOK, page{Title: "Unsubscribe?",
		Paragraphs: []string{fmt.Sprintf("Stop all marketing emails to %s?", display(email))},
		Forms:      []form{{Label: "Unsubscribe"}},
		Link:       prefs, LinkLabel: "Email preferences"})
}

// unsubscribe is the RFC 8058 one-click POST (the body,
// "List-Unsubscribe=One-Click", is not needed) and the page's button.
func (h *Handler) unsubscribe(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4<<10))
	t, err := h.signer.Verify(Unsubscribe, r.PathValue("token"), h.opts.Now())
	if err != nil {
		h.badLink(w, err)
		return
	}
	if !h.doUnsubscribe(w, r, t) {
		return
	}
	h.render(w, http.StatusOK, page{Title: "You are unsubscribed",
		Paragraphs: []string{"You will not receive our marketing emails any more. It can take a moment for an email already on its way to arrive."},
		Link:       h.preferencesPath(t), LinkLabel: "Changed your mind? Email preferences"})
}

func (h *Handler) doUnsubscribe(w http.ResponseWriter, r *http.Request, t Token) bool {
	at := h.opts.Now()
	// Done even if the client goes away meanwhile: a one-click POST is
	// not always retried.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), changeTimeout)
	defer cancel()
	id, err := h.store.Unsubscribe(ctx, t.ContactID, t.SendID, at)
	if errors.Is(err, ErrNotFound) {
		// The link is authentic, so the contact existed and has been
		// erased since: its address is suppressed for good. What the
		// person asked for holds, so a one-click client gets its 200.
		h.render(w, http.StatusOK, page{Title: "You are unsubscribed",
			Paragraphs: []string{"We no longer have this address on file, and it will not receive our emails."}})
		return false
	}
	if err != nil {
		h.unavailable(w, "unsubscribing", err)
		return false
	}
	h.opts.Log.Info("unsubscribed", "contact", id, "send", t.SendID)
	if h.opts.OnEvent != nil {
		h.opts.OnEvent(id, EventUnsubscribed, map[string]any{"send_id": t.SendID}, at)
	}
	return true
}

// preferencesPath is the preferences page of the contact and send of t,
// with a link of the same lifetime as t, relative to /u/TOKEN.
func (h *Handler) preferencesPath(t Token) string {
	return ".." + PathPreferences + h.signer.Sign(Token{Kind: Preferences, ContactID: t.ContactID, SendID: t.SendID, Expires: t.Expires})
}

// --- preferences ---

func (h *Handler) preferencesPage(w http.ResponseWriter, r *http.Request) {
	t, err := h.signer.Verify(Preferences, r.PathValue("token"), h.opts.Now())
	if err != nil {
		h.badLink(w, err)
		return
	}
	email, status, blocked, err := h.store.ContactEmail(r.Context(), t.ContactID)
	if errors.Is(err, ErrNotFound) {
		h.render(w, http.StatusNotFound, page{Title: "Email preferences", Paragraphs: []string{"We no longer have this address on file."}})
		return
	}
	if err != nil {
		h.unavailable(w, "loading a contact for the preferences page", err)
		return
	}
	p := page{Title: "Email preferences"}
	if r.URL.Query().Get("done") != "" {
		p.Paragraphs = append(p.Paragraphs, "Saved.")
	}
	csrf := h.signer.FormToken(r.PathValue("token"))
	if status == "unsubscribed" {
		p.Paragraphs = append(p.Paragraphs, fmt.Sprintf("%s is unsubscribed from all our marketing emails.", display(email)))
		p.Forms = []form{{Name: "action", Value: "resubscribe", Label: "Resubscribe", CSRF: csrf}}
	} else if blocked != "" {
		p.Paragraphs = append(p.Paragraphs, fmt.Sprintf("%s is subscribed, but we do not send to it: %s. Please contact us if that should change.", display(email), blockedWhy(blocked)))
		p.Forms = []form{{Name: "action", Value: "unsubscribe", Label: "Unsubscribe from all", CSRF: csrf}}
	} else {
		p.Paragraphs = append(p.Paragraphs, fmt.Sprintf("%s receives our marketing emails.", display(email)))
		p.Forms = []form{{Name: "action", Value: "unsubscribe", Label: "Unsubscribe from all", CSRF: csrf}}
	}
	h.render(w, http.StatusOK, p)
}

func (h *Handler) preferences(w http.ResponseWriter, r *http.Request) {
	t, err := h.signer.Verify(Preferences, r.PathValue("token"), h.opts.Now())
	if err != nil {
		h.badLink(w, err)
		return
	}
	if crossSite(r) {
		h.render(w, http.StatusForbidden, page{Title: "Email preferences",
			Paragraphs: []string{"This form can only be sent from the preferences page itself. Please open the link from the email and try again."}})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		h.render(w, http.StatusBadRequest, page{Title: "Email preferences", Paragraphs: []string{"The form could not be read: " + err.Error()}})
		return
	}
	if !h.signer.CheckFormToken(r.PathValue("token"), r.PostForm.Get("form_token")) {
		h.render(w, http.StatusForbidden, page{Title: "Email preferences",
			Paragraphs: []string{"The form is incomplete or out of date (its form_token does not match this link). Please reload the page and try again."}})
		return
	}
	switch r.PostForm.Get("action") {
	case "unsubscribe":
		if !h.doUnsubscribe(w, r, t) {
			return
		}
	case "resubscribe":
		at := h.opts.Now()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), changeTimeout)
		defer cancel()
		id, err := h.store.Resubscribe(ctx, t.ContactID, at)
		if errors.Is(err, ErrNotFound) {
			h.render(w, http.StatusNotFound, page{Title: "Email preferences", Paragraphs: []string{"We no longer have this address on file."}})
			return
		}
		if err != nil {
			h.unavailable(w, "resubscribing", err)
			return
		}
		h.opts.Log.Info("resubscribed", "contact", id, "send", t.SendID)
		if h.opts.OnEvent != nil {
			h.opts.OnEvent(id, EventResubscribed, map[string]any{"send_id": t.SendID}, at)
		}
	default:
		h.render(w, http.StatusBadRequest, page{Title: "Email preferences",
			Paragraphs: []string{`The form must choose "unsubscribe" or "resubscribe".`}})
		return
	}
	// Back to the page (a relative reference: the same path, so it works
	// under any prefix), which now shows the new state.
	w.Header().Set("Location", "?done=1")
	w.WriteHeader(http.StatusSeeOther)
}

// crossSite reports whether a browser says r comes from another site
// (Sec-Fetch-Site: cross-site or same-site; every current browser sends
// it). Requests without it (older browsers, tools) are judged by the form
// token alone. The Origin header is not used: the pages' no-referrer
// policy makes browsers send "Origin: null", and a reverse proxy may
// change Host.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	return false
}

// blockedWhy says in words why an address is suppressed.
func blockedWhy(reason string) string {
	switch reason {
	case "hard_bounce":
		return "an earlier email to it could not be delivered"
	case "complaint":
		return "an earlier email was reported as unwanted"
	case "manual":
		return "it was removed from our list"
	}
	return "it is on our do-not-send list"
}

func display(email string) string {
	if email == "" {
		return "This address"
	}
	return email
}

// --- open and click ---

// engageTimeout bounds how long recording an open or click may hold the
// image or the redirect back.
const engageTimeout = 3 * time.Second

// changeTimeout bounds an unsubscription or a resubscription.
const changeTimeout = 15 * time.Second

// pixel is a transparent 1x1 GIF.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

func (h *Handler) open(w http.ResponseWriter, r *http.Request) {
	now := h.opts.Now()
	t, err := h.signer.Verify(Open, r.PathValue("token"), now)
	switch {
	case err == nil:
		h.engage(r, t, now, EventOpened, EventOpenedMachine, nil)
	case errors.Is(err, ErrExpired):
		// An old email opened: show the image, record nothing.
	default:
		http.Error(w, "invalid link", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "image/gif")
	w.Header().Set("Cache-Control", "no-store, no-cache, must-revalidate, private, max-age=0")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Expires", "0")
	w.Header().Set("Content-Length", fmt.Sprint(len(pixel)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(pixel)
}

func (h *Handler) click(w http.ResponseWriter, r *http.Request) {
	now := h.opts.Now()
	t, err := h.signer.Verify(Click, r.PathValue("token"), now)
	switch {
	case err == nil:
		h.engage(r, t, now, EventClicked, EventClickedMachine, map[string]any{"url": t.URL})
	case errors.Is(err, ErrExpired):
		// Still an authentic link of ours: take the person where it
		// goes, without recording.
	default:
		h.badLink(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	// The target comes only from the signed token: no open redirect.
	http.Redirect(w, r, t.URL, http.StatusFound)
}

// engage records an open or click; failures are logged, never shown (the
// image still loads, the click still goes through), and a slow database
// holds the answer back by at most engageTimeout.
func (h *Handler) engage(r *http.Request, t Token, now time.Time, human, machine string, props map[string]any) {
	// Recorded even if the client goes away meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), engageTimeout)
	defer cancel()
	sentAt, err := h.store.SentAt(ctx, t.ContactID, t.SendID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		h.opts.Log.Warn("looking up a send for tracking", "contact", t.ContactID, "send", t.SendID, "err", err)
	}
	if props == nil {
		props = map[string]any{}
	}
	name := human
	if isMachine, why := Machine(t.Kind, r, sentAt, now, h.opts.MachineWindow); isMachine {
		name = machine
		props[PropMachine] = true
		props[PropMachineReason] = why
	}
	if ua := r.UserAgent(); ua != "" {
		props["user_agent"] = truncate(ua, 512)
	}
	id, err := h.store.TrackEngagement(ctx, t.ContactID, t.SendID, name, props, now)
	if errors.Is(err, ErrNotFound) {
		// The contact was erased since: nothing to record it on.
		h.opts.Log.Debug("not recording "+name+": no such contact", "contact", t.ContactID, "send", t.SendID)
		return
	}
	if err != nil {
		h.opts.Log.Error("recording "+name, "contact", t.ContactID, "send", t.SendID, "err", err)
		return
	}
	if h.opts.OnEvent != nil {
		h.opts.OnEvent(id, name, props, now)
	}
}
