package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// stdEnvelope is how encoding/json decodes a batch body.
type stdEnvelope struct {
	Batch    []json.RawMessage `json:"batch"`
	SentAt   json.RawMessage   `json:"sentAt"`
	WriteKey string            `json:"writeKey"`
	Context  json.RawMessage   `json:"context"`
}

// nesting is the deepest nesting of objects and arrays in valid JSON b.
func nesting(b []byte) int {
	depth, deepest, inStr := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

func sameRaw(t *testing.T, what string, got, want *raw) {
	t.Helper()
	var g, w raw
	for _, name := range rawFields {
		gv, wv := *got.field(name), *want.field(name)
		if !bytes.Equal(gv, wv) || (gv == nil) != (wv == nil) {
			t.Fatalf("%s: field %s: scanner %q, encoding/json %q", what, name, gv, wv)
		}
	}
	_, _ = g, w
}

// checkEntryScan asserts that scanRaw agrees with encoding/json on body.
func checkEntryScan(t *testing.T, body []byte) {
	t.Helper()
	var fast, std raw
	p := scanRaw(body, &fast)
	err := json.Unmarshal(body, &std)
	switch p {
	case scanOK:
		if err != nil {
			t.Fatalf("scanner accepted %q, encoding/json refused it: %v", body, err)
		}
		sameRaw(t, "entry", &fast, &std)
	case scanInvalid:
		if err == nil && !bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
			t.Fatalf("scanner gave up on %q, which encoding/json decodes", body)
		}
	case scanTooDeep:
		if err == nil && nesting(body) <= MaxDepth {
			t.Fatalf("scanner says %q nests too deeply; it nests %d levels", body, nesting(body))
		}
	}
}

// checkEnvelopeScan asserts that scanEnvelope agrees with encoding/json.
func checkEnvelopeScan(t *testing.T, body []byte) {
	t.Helper()
	var env envelope
	p := scanEnvelope(body, &env)
	var std stdEnvelope
	err := json.Unmarshal(body, &std)
	switch p {
	case scanOK:
		if err != nil && len(env.deep) > 0 && strings.Contains(err.Error(), "exceeded max depth") {
			return // an entry too deep for encoding/json too, skipped to be refused alone
		}
		if err != nil {
			t.Fatalf("scanner accepted %q, encoding/json refused it: %v", body, err)
		}
		if env.hasBatch != (std.Batch != nil) || len(env.entries) != len(std.Batch) {
			t.Fatalf("%q: scanner found %d entries (batch %v), encoding/json %d", body, len(env.entries), env.hasBatch, len(std.Batch))
		}
		for i := range std.Batch {
			if !bytes.Equal(env.entries[i], std.Batch[i]) {
				t.Fatalf("%q: entry %d: scanner %q, encoding/json %q", body, i, env.entries[i], std.Batch[i])
			}
			if env.objects[i] {
				var r raw
				if err := json.Unmarshal(std.Batch[i], &r); err != nil {
					t.Fatalf("%q: entry %d is an object encoding/json cannot decode: %v", body, i, err)
				}
				sameRaw(t, "batch entry", &env.raws[i], &r)
			} else if std.Batch[i][0] == '{' && !slices.Contains(env.deep, i) {
				t.Fatalf("%q: entry %d is an object the scanner did not read", body, i)
			}
		}
		if !bytes.Equal(env.sentAt, std.SentAt) || !bytes.Equal(env.context, std.Context) || env.writeKey != std.WriteKey {
			t.Fatalf("%q: scanner sentAt %q context %q writeKey %q; encoding/json %q %q %q", body, env.sentAt, env.context, env.writeKey, std.SentAt, std.Context, std.WriteKey)
		}
	case scanInvalid:
		if err == nil && !bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
			t.Fatalf("scanner gave up on %q, which encoding/json decodes", body)
		}
	case scanTooDeep:
		if err == nil && nesting(body) <= MaxDepth+2 {
			t.Fatalf("scanner says %q nests too deeply; it nests %d levels", body, nesting(body))
		}
	}
}

// storable asserts what PostgreSQL needs of an accepted message: text
// without NUL and in UTF-8, JSON objects jsonb takes (no \u0000, numbers in
// range), and no more than a few times the input's size.
func storable(t *testing.T, m *Message, inputSize int) {
	t.Helper()
	for _, s := range []string{m.Kind, m.UserID, m.AnonymousID, m.MessageID, m.Name, m.Email} {
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			t.Fatalf("accepted text %q PostgreSQL refuses", s)
		}
	}
	if m.UserID == "" && m.AnonymousID == "" || m.MessageID == "" || m.Name == "" {
		t.Fatalf("accepted a message without an id or a name: %+v", m)
	}
	if m.Timestamp.Year() < 1700 || m.Timestamp.Year() > 2300 {
		t.Fatalf("accepted timestamp %v", m.Timestamp)
	}
	size := 0
	for _, v := range []json.RawMessage{m.Properties, m.Traits, m.Context} {
		size += len(v)
		if v == nil {
			continue
		}
		if len(v) == 0 || v[0] != '{' || !json.Valid(v) {
			t.Fatalf("accepted %q as a JSON object", v)
		}
		if bytes.Contains(v, []byte(`\u0000`)) && !bytes.Contains(v, []byte(`\\u0000`)) {
			t.Fatalf("accepted %q, which jsonb refuses (\\u0000)", v)
		}
		var s scanner
		s = scanner{b: v, limit: MaxDepth, field: "x"}
		if !s.value() || s.big {
			t.Fatalf("accepted %q with a number jsonb cannot store or nested too deeply", v)
		}
	}
	if size > 3*inputSize+1024 {
		t.Fatalf("a %d-byte input became %d bytes of JSON", inputSize, size)
	}
}

// checkParse runs what the HTTP API runs on body as a single call of
// each kind and as a batch body, and checks the outcome.
func checkParse(t *testing.T, body []byte) {
	received := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	checkEntryScan(t, body)
	checkEnvelopeScan(t, body)
	for _, kind := range []string{"", KindTrack, KindIdentify, KindPage} {
		m, err := Parse(body, kind, -1, received, time.Time{})
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Msg == "" {
				t.Fatalf("Parse(%q): error %v names no field and reason", body, err)
			}
			continue
		}
		storable(t, &m, len(body))
	}
	env := &envelope{}
	if bad := decodeEnvelope(body, env); bad != nil {
		if bad.Error == "" || bad.Field == "" {
			t.Fatalf("batch %q refused without naming the place: %+v", body, bad)
		}
		return
	}
	msgs, _, rejected, bad := parseEntries(env, received)
	if bad != nil {
		if bad.Error == "" || bad.Field == "" {
			t.Fatalf("batch %q refused without naming the place: %+v", body, bad)
		}
		return
	}
	if len(msgs)+len(rejected) != len(env.entries) {
		t.Fatalf("batch %q: %d stored + %d rejected ≠ %d entries", body, len(msgs), len(rejected), len(env.entries))
	}
	for _, fe := range rejected {
		if !strings.HasPrefix(fe.Field, "batch[") || fe.Msg == "" {
			t.Fatalf("batch %q: rejection %+v does not name its entry", body, fe)
		}
	}
	for i := range msgs {
		storable(t, &msgs[i], len(body))
	}
}

var scanCases = []string{
	`{"type":"track","userId":"u1","event":"x","properties":{"a":1,"b":[true,false,null],"c":{"d":"e"}}}`,
	` {"userId" : "u" , "event":"x"} `,
	`{"USERID":"u","Event":"x"}`,
	`{"userId":"u","userid":"v","event":"x"}`,
	`{"userId":null,"anonymousId":"a","event":"x"}`,
	`{"user\u0049d":"u","event":"x"}`,
	`{"userId":"\u00e9\ud83d\ude00","event":"caf\u00e9"}`,
	`{"userId":"u","event":"x","properties":{"s":"a\u0000b","t":"\ud800"}}`,
	`{"userId":"u","event":"x","properties":{"n":1e999999}}`,
	`{"userId":"u","event":"x","properties":{"n":1.5e400,"m":0.1e-401}}`,
	`{"userId":"u","event":"x","properties":{"n":1E+300,"m":-0.5e-300}}`,
	`{"userId":"u","event":"x\u0000"}`,
	`{"userId":1e400,"event":"x"}`,
	`{"userId":"u","event":"x","timestamp":"2026-11-23T10:00:00.123+01:00"}`,
	`{"userId":"u","event":"x",}`,
	`{"userId":"u","event":"x"`,
	`{"userId":"u" "event":"x"}`,
	`{"userId":"u","event":"x"} x`,
	`{"userId":"\x01","event":"x"}`,
	`{"userId":-,"event":"x"}`,
	`{"userId":01,"event":"x"}`,
	`{"userId":"u","event":tru}`,
	`[1,2]`,
	`null`,
	`"str"`,
	``,
	`{"batch":[{"type":"track","userId":"u","event":"x"},{"type":"identify","userId":"u","traits":{"email":"A@B.CO"}}],"sentAt":"2026-11-23T11:59:59Z","context":{"ip":"1.2.3.4"}}`,
	`{"batch":[null,1,"x",[],{"type":"track","anonymousId":"a","event":"y"}]}`,
	`{"batch":{}}`,
	`{"batch":null}`,
	`{"batch":[],"batch":[{"type":"page","userId":"u","name":"Home"}]}`,
	`{"BATCH":[{"type":"track","userId":"u","event":"x"}],"writeKey":"k\u0041"}`,
	`{"batch":[{"type":"track","userId":"u","event":"x"}],"writeKey":5}`,
	`{"batch":[{"type":"track","userId":"u","event":"x"}],"writeKey":null,"sentAt":3}`,
	`{"batch":[{"type":"track","userId":"u","event":"x"}],"context":{"n":1e500}}`,
	`{"batch":[{"type":"track","userId":"u","event":"x"}],"context":{"s":"\u0000"}}`,
	`{"batch":[{"type":"alias","userId":"u","previousId":"p"},{"type":"group","userId":"u","groupId":"g"}]}`,
	`{"batch":[{"type":"track","userId":"u","event":"x"` + strings.Repeat(`,"p":[`, 3) + strings.Repeat(`]`, 3) + `}]}`,
	`{"type":"track","userId":"u","event":"x","properties":` + strings.Repeat(`{"a":`, MaxDepth-1) + `1` + strings.Repeat(`}`, MaxDepth-1) + `}`,
	`{"type":"track","userId":"u","event":"x","properties":` + strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat(`}`, MaxDepth) + `}`,
	`{"batch":[{"type":"track","userId":"u","event":"x","properties":` + strings.Repeat(`[`, 5000) + strings.Repeat(`]`, 5000) + `}]}`,
	strings.Repeat(`[`, 20000),
}

// The scanner decodes exactly what encoding/json decodes, and what the API
// accepts can be stored.
func TestScanAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, c := range scanCases {
		checkParse(t, []byte(c))
	}
}

// Nesting deeper than MaxDepth is refused, naming the entry; up to it is
// accepted.
func TestDeepNestingRefused(t *testing.T) {
	t.Parallel()
	nest := func(n int) string {
		return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n)
	}
	received := time.Now()
	// The entry is level 1: its properties may nest MaxDepth-1 levels.
	if _, err := Parse([]byte(`{"userId":"u","event":"x","properties":`+nest(MaxDepth-1)+`}`), KindTrack, -1, received, time.Time{}); err != nil {
		t.Fatalf("nesting at the limit refused: %v", err)
	}
	_, err := Parse([]byte(`{"userId":"u","event":"x","properties":`+nest(MaxDepth)+`}`), KindTrack, -1, received, time.Time{})
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "nested deeper") {
		t.Fatalf("nesting over the limit: %v", err)
	}
	// In a batch, the deep entry is refused alone; the others are read.
	body := `{"batch":[{"type":"track","userId":"u","event":"x"},{"type":"track","userId":"u","event":"y","properties":` + nest(1000) + `},{"type":"track","userId":"u","event":"z"}]}`
	env := &envelope{}
	if bad := decodeEnvelope([]byte(body), env); bad != nil {
		t.Fatalf("a batch with a deep entry refused whole: %+v", bad)
	}
	msgs, _, rejected, bad := parseEntries(env, received)
	if bad != nil || len(msgs) != 2 || len(rejected) != 1 || rejected[0].Field != "batch[1]" || !strings.Contains(rejected[0].Msg, "nested deeper") {
		t.Fatalf("a batch with a deep entry: %d stored, rejected %+v, %+v", len(msgs), rejected, bad)
	}
}

// Numbers jsonb cannot store are refused, naming the field.
func TestNumbersOutOfRangeRefused(t *testing.T) {
	t.Parallel()
	received := time.Now()
	for _, c := range []struct{ body, field string }{
		{`{"userId":"u","event":"x","properties":{"n":1e1000000}}`, "properties.n"},
		{`{"userId":"u","event":"x","properties":{"n":1e401}}`, "properties.n"},
		{`{"userId":"u","event":"x","context":{"n":1e-999}}`, "context.n"},
		{`{"userId":"u","event":"x","properties":{"n":0.` + strings.Repeat("0", 20000) + `1}}`, "properties.n"},
		{`{"userId":"u","traits":{"n":-2E+0401}}`, "traits.n"},
	} {
		_, err := Parse([]byte(c.body), "", -1, received, time.Time{})
		if c.field == "traits" {
			_, err = Parse([]byte(c.body), KindIdentify, -1, received, time.Time{})
		} else {
			_, err = Parse([]byte(c.body), KindTrack, -1, received, time.Time{})
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Msg, "out of range") {
			t.Errorf("%.60s: %v, want out of range in %s", c.body, err, c.field)
		}
	}
	for _, ok := range []string{`1e308`, `-1.5E-300`, `1e0300`, `0.` + strings.Repeat("1", 1000)} {
		if _, err := Parse([]byte(`{"userId":"u","event":"x","properties":{"n":`+ok+`}}`), KindTrack, -1, received, time.Time{}); err != nil {
			t.Errorf("%.40s refused: %v", ok, err)
		}
	}
}

// FuzzParse feeds arbitrary bodies to what the API runs on them, as
// single calls and as a batch: no panic; the scanner agrees with
// encoding/json; every refusal names its place; everything accepted can
// be stored and is at most a few times the input's size. The seed corpus
// (testdata/fuzz/FuzzParse and scanCases) runs with the regular tests; run
// go test -fuzz FuzzParse ./internal/ingest to search further.
func FuzzParse(f *testing.F) {
	for _, c := range scanCases {
		if len(c) <= MaxBatchBytes {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > MaxBatchBytes {
			return // the handler refuses it before decoding (413)
		}
		checkParse(t, body)
	})
}
