// Package ingest takes contact activity in: the Segment tracking spec over
// HTTP (identify, track, page, screen, group, alias, batch) and bulk files,
// validated entry by entry, de-duplicated by messageId, and written in
// group-committed batches so that a 200 always means stored.
package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/waymark/waymark/mailer"
)

// Limits from the Segment tracking API.
const (
	MaxEventBytes = 32 << 10  // one entry
	MaxBatchBytes = 500 << 10 // one request body
)

// Limits of a contact's traits, all identify calls merged: an identify that
// would take them over is refused (400 naming traits) and the stored
// traits stay as they were. Without them, 200 identifies of 30 KB each
// gave a contact 6 MB of traits, rewritten whole on every identify.
const (
	MaxTraitBytes = 64 << 10 // as JSON text
	MaxTraitKeys  = 256      // top-level keys
)

// Kinds of message, as in the Segment spec.
const (
	KindTrack    = "track"
	KindPage     = "page"
	KindScreen   = "screen"
	KindIdentify = "identify"
	KindGroup    = "group"
	KindAlias    = "alias"
)

// Message is one validated, normalised entry ready to store.
type Message struct {
	Kind        string
	UserID      string
	AnonymousID string
	MessageID   string
	// Name is the event's name: the track event, "page_viewed",
	// "screen_viewed", "identify", "group" or "alias".
	Name string
	// Properties are the event's properties as a JSON object; for identify
	// and group, the traits.
	Properties json.RawMessage
	// Traits, set for identify only, are merged into the contact (later
	// wins); Email is the normalised email trait, if one was given.
	Traits    json.RawMessage
	Email     string
	Context   json.RawMessage
	Timestamp time.Time
}

// FieldError rejects one entry, naming the field at fault.
type FieldError struct {
	Index int    `json:"index"` // position in the batch or line number in a file; -1 for a single call
	Field string `json:"field"`
	Msg   string `json:"error"`
}

func (e *FieldError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("entry %d: %s: %s", e.Index, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// raw is an entry as sent; fields are decoded loosely so that the error can
// name the one that is wrong.
type raw struct {
	Type              json.RawMessage `json:"type"`
	UserID            json.RawMessage `json:"userId"`
	AnonymousID       json.RawMessage `json:"anonymousId"`
	PreviousID        json.RawMessage `json:"previousId"`
	GroupID           json.RawMessage `json:"groupId"`
	MessageID         json.RawMessage `json:"messageId"`
	Event             json.RawMessage `json:"event"`
	Name              json.RawMessage `json:"name"`
	Category          json.RawMessage `json:"category"`
	Properties        json.RawMessage `json:"properties"`
	Traits            json.RawMessage `json:"traits"`
	Context           json.RawMessage `json:"context"`
	Timestamp         json.RawMessage `json:"timestamp"`
	OriginalTimestamp json.RawMessage `json:"originalTimestamp"`
	SentAt            json.RawMessage `json:"sentAt"`

	// Set by the scanner: a number that cannot be stored, in bigField.
	bigNumber bool
	bigField  string
}

// Parse validates one entry. kind is the type implied by the endpoint
// ("" for batch entries, which must carry their own type). received is when
// the request arrived and sentAt the batch's sentAt (zero if none), for
// Segment's clock-skew correction: timestamp = received - (sentAt -
// originalTimestamp) when the entry has no explicit timestamp.
//
// The message's JSON values (Properties, Traits, Context) may point into
// body.
func Parse(body []byte, kind string, index int, received, sentAt time.Time) (Message, error) {
	return parse(body, nil, kind, index, received, sentAt)
}

// parse is Parse; r, if set, holds body's fields already found by
// scanEnvelope.
func parse(body []byte, r *raw, kind string, index int, received, sentAt time.Time) (Message, error) {
	fail := func(field, msg string, args ...any) (Message, error) {
		return Message{}, &FieldError{Index: index, Field: field, Msg: fmt.Sprintf(msg, args...)}
	}
	if len(body) > MaxEventBytes {
		return fail("", "entry is %d bytes, over the limit of %d", len(body), MaxEventBytes)
	}
	if !utf8.Valid(body) {
		return fail("", "not valid UTF-8")
	}
	if r == nil {
		r = new(raw)
		switch scanRaw(body, r) {
		case scanTooDeep:
			return fail("", "%s", depthError())
		case scanInvalid:
			*r = raw{}
			if err := json.Unmarshal(body, r); err != nil {
				return fail("", "malformed JSON: %s", jsonProblem(err))
			}
		}
	}
	if r.bigNumber {
		field := r.bigField
		if f := r.field(field); f != nil {
			if p := numberPath(*f); p != "" {
				field += "." + p
			}
		}
		return fail(field, "%s", numberProblem())
	}
	var m Message
	var err error
	t, err := str(r.Type)
	if err != nil {
		return fail("type", "%v", err)
	}
	if kind == "" {
		kind = t
	}
	switch kind {
	// The constants, not the entry's copies: a bulk file's messages then
	// share them.
	case KindTrack:
		kind = KindTrack
	case KindPage:
		kind = KindPage
	case KindScreen:
		kind = KindScreen
	case KindIdentify:
		kind = KindIdentify
	case KindGroup:
		kind = KindGroup
	case KindAlias:
		kind = KindAlias
	case "":
		return fail("type", "missing: each batch entry needs a type (track, page, screen, identify, group or alias)")
	default:
		return fail("type", "unknown type %q (want track, page, screen, identify, group or alias)", kind)
	}
	m.Kind = kind
	if m.UserID, err = id(r.UserID); err != nil {
		return fail("userId", "%v", err)
	}
	if m.AnonymousID, err = id(r.AnonymousID); err != nil {
		return fail("anonymousId", "%v", err)
	}
	if kind == KindAlias {
		prev, err := id(r.PreviousID)
		if err != nil {
			return fail("previousId", "%v", err)
		}
		if prev == "" {
			return fail("previousId", "missing: alias needs the previous id")
		}
		// An alias joins the previous (anonymous) id to the user id.
		m.AnonymousID = prev
	}
	if m.UserID == "" && m.AnonymousID == "" {
		return fail("userId", "missing: each entry needs a userId or an anonymousId")
	}
	if m.MessageID, err = id(r.MessageID); err != nil {
		return fail("messageId", "%v", err)
	}
	if m.MessageID == "" {
		// Without a messageId, the content itself identifies a retry.
		sum := sha256.Sum256(body)
		m.MessageID = "sha256:" + hex.EncodeToString(sum[:16])
	}
	if m.Properties, err = object(r.Properties); err != nil {
		return fail("properties", "%v", err)
	}
	if m.Context, err = object(r.Context); err != nil {
		return fail("context", "%v", err)
	}
	if len(m.Context) == 2 {
		m.Context = nil
	}
	traits, err := object(r.Traits)
	if err != nil {
		return fail("traits", "%v", err)
	}
	switch kind {
	case KindTrack:
		if m.Name, err = str(r.Event); err != nil {
			return fail("event", "%v", err)
		}
		m.Name = strings.TrimSpace(m.Name)
		if m.Name == "" {
			return fail("event", "missing: track needs the event's name")
		}
		if len(m.Name) > 200 {
			return fail("event", "name is longer than 200 characters")
		}
	case KindPage, KindScreen:
		m.Name = kind + "_viewed"
		name, err := str(r.Name)
		if err != nil {
			return fail("name", "%v", err)
		}
		cat, err := str(r.Category)
		if err != nil {
			return fail("category", "%v", err)
		}
		m.Properties = withFields(m.Properties, "name", name, "category", cat)
	case KindIdentify:
		m.Name = "identify"
		if n := topKeys(traits); n > MaxTraitKeys {
			return fail("traits", "%d keys, over the limit of %d a contact's traits may hold", n, MaxTraitKeys)
		}
		if email, ok, err := emailTrait(traits); err != nil {
			return fail("traits.email", "%v", err)
		} else if ok {
			m.Email = email
			traits = withFields(traits, "email", email)
		}
		m.Traits = traits
		m.Properties = traits
	case KindGroup:
		m.Name = "group"
		gid, err := id(r.GroupID)
		if err != nil {
			return fail("groupId", "%v", err)
		}
		if gid == "" {
			return fail("groupId", "missing: group needs a groupId")
		}
		m.Properties = withFields(traits, "groupId", gid)
	case KindAlias:
		m.Name = "alias"
	}
	if m.Timestamp, err = timestamp(r, received, sentAt); err != nil {
		return fail(err.(*tsError).field, "%v", err.(*tsError).err)
	}
	return m, nil
}

type tsError struct {
	field string
	err   error
}

func (e *tsError) Error() string { return e.field + ": " + e.err.Error() }

func timestamp(r *raw, received, batchSentAt time.Time) (time.Time, error) {
	parse := func(field string, v json.RawMessage) (time.Time, error) {
		s, err := str(v)
		if err != nil {
			return time.Time{}, &tsError{field, err}
		}
		if s == "" {
			return time.Time{}, nil
		}
		t, err := ParseTime(s)
		if err != nil {
			return time.Time{}, &tsError{field, err}
		}
		return t, nil
	}
	ts, err := parse("timestamp", r.Timestamp)
	if err != nil || !ts.IsZero() {
		return ts.UTC(), err
	}
	orig, err := parse("originalTimestamp", r.OriginalTimestamp)
	if err != nil {
		return time.Time{}, err
	}
	sent, err := parse("sentAt", r.SentAt)
	if err != nil {
		return time.Time{}, err
	}
	if sent.IsZero() {
		sent = batchSentAt
	}
	switch {
	case orig.IsZero():
		return received.UTC(), nil
	case sent.IsZero():
		return orig.UTC(), nil
	default:
		return received.Add(-sent.Sub(orig)).UTC(), nil
	}
}

// ParseTime accepts ISO 8601 / RFC 3339 timestamps (with or without
// fractional seconds or a zone; a missing zone means UTC) and dates.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1970 || t.Year() > 2200 {
				return time.Time{}, fmt.Errorf("%q is out of range", s)
			}
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 timestamp (like 2026-11-23T10:00:00Z)", s)
}

func str(v json.RawMessage) (string, error) {
	if len(v) == 0 || string(v) == "null" {
		return "", nil
	}
	if v[0] != '"' {
		return "", fmt.Errorf("must be a string, got %s", kindOf(v))
	}
	s, err := unquote(v)
	if err != nil {
		return "", fmt.Errorf("malformed string")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", fmt.Errorf("contains a NUL character")
	}
	return s, nil
}

// id reads an identifier: a string, or a number (some clients send numeric
// user ids), at most 255 bytes of valid UTF-8.
func id(v json.RawMessage) (string, error) {
	if len(v) == 0 || string(v) == "null" {
		return "", nil
	}
	var s string
	switch v[0] {
	case '"':
		var err error
		if s, err = unquote(v); err != nil {
			return "", fmt.Errorf("malformed string")
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			return "", fmt.Errorf("malformed number")
		}
		s = string(v)
	default:
		return "", fmt.Errorf("must be a string, got %s", kindOf(v))
	}
	s = strings.TrimSpace(s)
	if len(s) > 255 {
		return "", fmt.Errorf("longer than 255 bytes")
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("not valid text")
	}
	return s, nil
}

// object checks that v is a JSON object (or absent) and returns it compact.
func object(v json.RawMessage) (json.RawMessage, error) {
	if len(v) == 0 || string(v) == "null" {
		return json.RawMessage("{}"), nil
	}
	if v[0] != '{' {
		return nil, fmt.Errorf("must be an object, got %s", kindOf(v))
	}
	if bytes.Contains(v, []byte(`\u`)) {
		// PostgreSQL's jsonb refuses NUL characters and lone surrogates
		// that encoding/json lets through: re-encode such objects.
		var x any
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber() // numbers as sent, not rounded to float64
		if err := d.Decode(&x); err != nil {
			return nil, fmt.Errorf("malformed: %v", err)
		}
		out, err := json.Marshal(noNUL(x))
		if err != nil {
			return nil, fmt.Errorf("malformed: %v", err)
		}
		return out, nil
	}
	return v, nil
}

// noNUL replaces NUL characters in x's strings and keys with U+FFFD
// (encoding/json already turned lone surrogates into it).
func noNUL(x any) any {
	switch v := x.(type) {
	case string:
		return strings.ReplaceAll(v, "\x00", "\uFFFD")
	case []any:
		for i := range v {
			v[i] = noNUL(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[strings.ReplaceAll(k, "\x00", "\uFFFD")] = noNUL(e)
		}
		return out
	}
	return x
}

// topKeys counts the keys of the JSON object obj (not those of objects
// inside it).
func topKeys(obj json.RawMessage) int {
	n := 0
	s := scanner{b: obj, limit: MaxDepth}
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '{' {
		s.object(func([]byte) bool { n++; return s.value() })
	}
	return n
}

func kindOf(v json.RawMessage) string {
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// withFields returns obj with the given key/value string pairs set (empty
// values are skipped).
func withFields(obj json.RawMessage, kv ...string) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		m = map[string]json.RawMessage{}
	}
	changed := false
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		b, _ := json.Marshal(kv[i+1])
		m[kv[i]] = b
		changed = true
	}
	if !changed {
		return obj
	}
	out, _ := json.Marshal(m)
	return out
}

// emailTrait finds, validates and normalises the email trait.
func emailTrait(traits json.RawMessage) (string, bool, error) {
	var t struct {
		Email json.RawMessage `json:"email"`
	}
	if err := json.Unmarshal(traits, &t); err != nil {
		return "", false, nil
	}
	if len(t.Email) == 0 || string(t.Email) == "null" {
		return "", false, nil
	}
	s, err := str(t.Email)
	if err != nil {
		return "", false, err
	}
	e, err := NormalizeEmail(s)
	if err != nil {
		return "", false, err
	}
	return e, true, nil
}

// NormalizeEmail validates a bare email address and returns it trimmed and
// lower-cased.
func NormalizeEmail(s string) (string, error) {
	// ASCII white space only: a trailing U+2029 is refused below, not
	// trimmed.
	s = strings.Trim(s, " \t\r\n")
	if s == "" {
		return "", fmt.Errorf("empty address")
	}
	if len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<>, ") {
		return "", fmt.Errorf("%q is not a valid email address", s)
	}
	if mailer.HasInvisible(s) {
		return "", fmt.Errorf("%+q is not a valid email address: it holds a control, format or separator character", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return "", fmt.Errorf("%q is not a valid email address", s)
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", fmt.Errorf("%q is not a valid email address", s)
	}
	return strings.ToLower(s), nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	if ok := asSyntax(err, &se); ok {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	return err.Error()
}

func asSyntax(err error, target **json.SyntaxError) bool {
	se, ok := err.(*json.SyntaxError)
	if ok {
		*target = se
	}
	return ok
}
