package ingest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ReadFile reads a bulk file — JSON lines in the Segment spec's shapes, or
// CSV with a header — and calls emit with chunks of up to chunk messages. A
// bad line is passed to bad (with its line number as Index) and the rest
// goes on. The format is told by the first non-blank byte: '{' is JSON
// lines, anything else CSV.
//
// CSV files are either contacts (a header with userId and email or other
// traits, and no event column) or events (userId or anonymousId, event,
// timestamp, then property columns). Values that read as numbers or
// booleans become JSON numbers or booleans. Rows have no messageId of their
// own, so one is derived from the row's content: importing the same file
// twice adds nothing.
func ReadFile(r io.Reader, now time.Time, chunk int, emit func([]Message) error, bad func(*FieldError)) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.Peek(1)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t' {
			_, _ = br.ReadByte()
			continue
		}
		if b[0] == '{' {
			return readJSONLines(br, now, chunk, emit, bad)
		}
		return readCSV(br, now, chunk, emit, bad)
	}
}

func readJSONLines(br *bufio.Reader, now time.Time, chunk int, emit func([]Message) error, bad func(*FieldError)) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEventBytes+1)
	out := make([]Message, 0, chunk)
	line := 0
	for {
		ok := sc.Scan()
		if !ok {
			if err := sc.Err(); err != nil {
				if errors.Is(err, bufio.ErrTooLong) {
					return fmt.Errorf("line %d: longer than %d bytes; stopping", line+1, MaxEventBytes)
				}
				return err
			}
			break
		}
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		m, err := Parse(text, "", line, now, time.Time{})
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(fe)
				continue
			}
			return err
		}
		// Parse keeps references into the scanner's buffer: copy them.
		m.Properties = clone(m.Properties)
		m.Traits = clone(m.Traits)
		m.Context = clone(m.Context)
		out = append(out, m)
		if len(out) == chunk {
			if err := emit(out); err != nil {
				return err
			}
			out = make([]Message, 0, chunk)
		}
	}
	if len(out) > 0 {
		return emit(out)
	}
	return nil
}

func clone(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

func readCSV(br *bufio.Reader, now time.Time, chunk int, emit func([]Message) error, bad func(*FieldError)) error {
	recs := newCSVRecords(br)
	hr, err := recs.next()
	if err != nil {
		return fmt.Errorf("line 1: reading the CSV header: %w", err)
	}
	header := append([]string(nil), hr.fields...)
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		header[i] = h
		if h == "" {
			return fmt.Errorf("line 1: column %d has no name", i+1)
		}
		if _, dup := col[h]; dup {
			return fmt.Errorf("line 1: column %q appears twice", h)
		}
		col[h] = i
	}
	_, hasUser := col["userId"]
	_, hasAnon := col["anonymousId"]
	if !hasUser && !hasAnon {
		return fmt.Errorf("line 1: the header needs a userId or anonymousId column")
	}
	_, isEvents := col["event"]
	reserved := map[string]bool{"userId": true, "anonymousId": true, "messageId": true, "event": true, "timestamp": true, "type": true}
	out := make([]Message, 0, chunk)
	var obj bytes.Buffer
	for {
		r, err := recs.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(fe)
				continue
			}
			return err
		}
		rec, line := r.fields, r.first
		if len(rec) != len(header) {
			msg := fmt.Sprintf("%d fields, but the header has %d", len(rec), len(header))
			if r.last > r.first {
				msg += fmt.Sprintf(" (a quoted value runs from this line to line %d)", r.last) + recs.reread()
			}
			bad(&FieldError{Index: line, Field: "", Msg: msg})
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		// Build the entry as Segment JSON and let Parse validate it, so
		// both formats obey the same rules.
		obj.Reset()
		obj.WriteString(`{`)
		field := func(k string, v []byte) {
			if obj.Len() > 1 {
				obj.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			obj.Write(kb)
			obj.WriteByte(':')
			obj.Write(v)
		}
		strv := func(s string) []byte { b, _ := json.Marshal(s); return b }
		if isEvents {
			field("type", strv(KindTrack))
			field("event", strv(get("event")))
			if ts := get("timestamp"); ts != "" {
				field("timestamp", strv(ts))
			}
		} else {
			field("type", strv(KindIdentify))
		}
		for _, k := range []string{"userId", "anonymousId", "messageId"} {
			if v := get(k); v != "" {
				field(k, strv(v))
			}
		}
		var props bytes.Buffer
		props.WriteByte('{')
		for i, h := range header {
			if reserved[h] {
				continue
			}
			v := strings.TrimSpace(rec[i])
			if v == "" {
				continue
			}
			if props.Len() > 1 {
				props.WriteByte(',')
			}
			kb, _ := json.Marshal(h)
			props.Write(kb)
			props.WriteByte(':')
			props.Write(csvValue(v))
		}
		props.WriteByte('}')
		if isEvents {
			field("properties", props.Bytes())
		} else {
			field("traits", props.Bytes())
		}
		if get("messageId") == "" {
			sum := sha256.Sum256(obj.Bytes())
			field("messageId", strv("csv:"+hex.EncodeToString(sum[:16])))
		}
		obj.WriteByte('}')
		m, err := Parse(obj.Bytes(), "", line, now, time.Time{})
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(fe)
				continue
			}
			return err
		}
		m.Properties = clone(m.Properties)
		m.Traits = clone(m.Traits)
		out = append(out, m)
		if len(out) == chunk {
			if err := emit(out); err != nil {
				return err
			}
			out = make([]Message, 0, chunk)
		}
	}
	if len(out) > 0 {
		return emit(out)
	}
	return nil
}

// csvValue types a CSV cell: numbers and booleans as such, the rest as text.
func csvValue(v string) []byte {
	if v == "true" || v == "false" {
		return []byte(v)
	}
	// A JSON number (no leading zeros: a zip code like 02134 stays text).
	if (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) && json.Valid([]byte(v)) {
		return []byte(v)
	}
	b, _ := json.Marshal(v)
	return b
}
