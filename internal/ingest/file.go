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
	"unsafe"
)

// ReadFile reads a bulk file — JSON lines in the Segment spec's shapes, or
// CSV with a header — and calls emit with chunks of up to chunk messages
// and up to ChunkBytes (see Message.Size), so a chunk's memory is bounded
// whatever its lines hold; emit owns the chunk. A bad line is passed to
// bad (with its line number as Index) and the rest goes on. The format is
// told by the first non-blank byte: '{' is JSON lines, anything else CSV.
//
// CSV files are either contacts (a header with userId and email or other
// traits, and no event column) or events (userId or anonymousId, event,
// timestamp, then property columns). Values that read as numbers or
// booleans become JSON numbers or booleans. Rows have no messageId of their
// own, so one is derived from the row's content: importing the same file
// twice adds nothing.
func ReadFile(r io.Reader, now time.Time, chunk int, emit func([]Message) error, bad func(*FieldError)) error {
	return ReadFileBytes(r, now, chunk, ChunkBytes, emit, bad)
}

// ReadFileBytes is ReadFile with chunks of up to chunkBytes (Message.Size)
// instead of ChunkBytes.
func ReadFileBytes(r io.Reader, now time.Time, chunk, chunkBytes int, emit func([]Message) error, bad func(*FieldError)) error {
	return readFile(r, now, &chunker{max: chunk, maxBytes: chunkBytes, emit: emit}, bad)
}

// ChunkBytes bounds the memory of a chunk ReadFile emits, as Message.Size
// counts it: a chunk of 100,000 typical events (a name, an id, a property
// or two) takes about 25 MB, and ChunkBytes lets it; a chunk of large
// entries (up to MaxEventBytes each) ends sooner.
const ChunkBytes = 32 << 20

// Size is about how much memory m holds: the Message itself and the
// bytes of its strings and JSON values (the strings a bulk file's
// messages share, such as Kind and a repeated Name, are counted anyway).
func (m *Message) Size() int {
	n := int(unsafe.Sizeof(*m)) + len(m.UserID) + len(m.AnonymousID) + len(m.MessageID) + len(m.Name) + len(m.Email) + len(m.Properties) + len(m.Context)
	if !sameBytes(m.Traits, m.Properties) {
		n += len(m.Traits)
	}
	return n
}

// sameBytes says whether a and b are the same bytes in memory (an
// identify's Traits and Properties).
func sameBytes(a, b json.RawMessage) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// chunker gathers a file's messages into chunks of at most max messages
// and maxBytes (Message.Size) and emits them.
type chunker struct {
	max, maxBytes int
	emit          func([]Message) error
	out           []Message
	bytes         int
	next          int // the capacity of the next chunk: the last one's length
	// names holds the event names met so far, so that the messages of a
	// chunk share one copy of each (a file has a few dozen names).
	names map[string]string
}

// identifyCost is what storing an identify call takes besides its message,
// counted in a chunk's bytes: its contact created (identities claimed,
// maps and the statements' arrays of the chunk's new contacts) and its
// traits merged. A chunk of 100,000 new contacts took about 1 KB a contact
// more than its messages, twice over with two workers: a contacts file of
// 1,000,000 peaked at 402 MB.
const identifyCost = 1 << 10

// maxNames bounds chunker.names: names past it are not shared.
const maxNames = 4096

// add takes m, whose JSON values may point into a reader's buffer (they
// are copied), and emits the chunk when it is full.
func (c *chunker) add(m Message) error {
	props := clone(m.Properties)
	if sameBytes(m.Traits, m.Properties) {
		m.Traits = props
	} else {
		m.Traits = clone(m.Traits)
	}
	m.Properties = props
	m.Context = clone(m.Context)
	if c.names == nil {
		c.names = map[string]string{}
	}
	if s, ok := c.names[m.Name]; ok {
		m.Name = s
	} else if len(c.names) < maxNames {
		c.names[m.Name] = m.Name
	}
	if len(c.out) > 0 {
		// A file grouped by user: the run of a user's messages shares
		// one copy of the id.
		if p := &c.out[len(c.out)-1]; p.UserID == m.UserID {
			m.UserID = p.UserID
		}
	}
	if c.out == nil {
		c.out = make([]Message, 0, max(c.next, min(c.max, 1024)))
	}
	c.out = append(c.out, m)
	c.bytes += m.Size()
	if m.Kind == KindIdentify {
		c.bytes += identifyCost
	}
	if len(c.out) >= c.max || c.bytes >= c.maxBytes {
		return c.flush()
	}
	return nil
}

// flush emits the messages gathered, if any. The next chunk starts at the
// size this one ended at (without the slack of append's doubling).
func (c *chunker) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	out := c.out
	c.out, c.bytes, c.next = nil, 0, len(out)
	return c.emit(out)
}

func readFile(r io.Reader, now time.Time, c *chunker, bad func(*FieldError)) error {
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
			return readJSONLines(br, now, c, bad)
		}
		return readCSV(br, now, c, bad)
	}
}

func readJSONLines(br *bufio.Reader, now time.Time, c *chunker, bad func(*FieldError)) error {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEventBytes+1)
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
		// Parse keeps references into the scanner's buffer: add copies
		// them.
		if err := c.add(m); err != nil {
			return err
		}
	}
	return c.flush()
}

func clone(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

func readCSV(br *bufio.Reader, now time.Time, c *chunker, bad func(*FieldError)) error {
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
	// The property columns, and their names as JSON, once.
	var props []int
	keys := make([][]byte, len(header))
	for i, h := range header {
		if !reserved[h] {
			props = append(props, i)
			keys[i], _ = json.Marshal(h)
		}
	}
	var obj, values []byte
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
		// both formats obey the same rules. The bytes are those
		// encoding/json writes (the messageId a row gets is their hash).
		obj = append(obj[:0], '{')
		if isEvents {
			obj = appendStringField(obj, "type", KindTrack)
			obj = appendStringField(obj, "event", get("event"))
			if ts := get("timestamp"); ts != "" {
				obj = appendStringField(obj, "timestamp", ts)
			}
		} else {
			obj = appendStringField(obj, "type", KindIdentify)
		}
		for _, k := range []string{"userId", "anonymousId", "messageId"} {
			if v := get(k); v != "" {
				obj = appendStringField(obj, k, v)
			}
		}
		values = append(values[:0], '{')
		for _, i := range props {
			v := strings.TrimSpace(rec[i])
			if v == "" {
				continue
			}
			if len(values) > 1 {
				values = append(values, ',')
			}
			values = append(values, keys[i]...)
			values = append(values, ':')
			values = appendCSVValue(values, v)
		}
		values = append(values, '}')
		if isEvents {
			obj = appendField(obj, "properties", values)
		} else {
			obj = appendField(obj, "traits", values)
		}
		if get("messageId") == "" {
			sum := sha256.Sum256(obj)
			obj = appendStringField(obj, "messageId", "csv:"+hex.EncodeToString(sum[:16]))
		}
		obj = append(obj, '}')
		m, err := Parse(obj, "", line, now, time.Time{})
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				bad(fe)
				continue
			}
			return err
		}
		if err := c.add(m); err != nil {
			return err
		}
	}
	return c.flush()
}

// appendCSVValue appends a CSV cell as JSON: numbers and booleans as
// such, the rest as text.
func appendCSVValue(b []byte, v string) []byte {
	if v == "true" || v == "false" {
		return append(b, v...)
	}
	// A JSON number (no leading zeros: a zip code like 02134 stays text).
	if (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) && json.Valid([]byte(v)) {
		return append(b, v...)
	}
	return appendJSONString(b, v)
}

// appendField appends "k":v to the JSON object being written in b (after
// a comma unless it is the first).
func appendField(b []byte, k string, v []byte) []byte {
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = appendJSONString(b, k)
	b = append(b, ':')
	return append(b, v...)
}

// appendStringField is appendField with a string value.
func appendStringField(b []byte, k, v string) []byte {
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = appendJSONString(b, k)
	b = append(b, ':')
	return appendJSONString(b, v)
}

// appendJSONString appends s as encoding/json writes it: a string of
// printable ASCII that needs no escaping (in HTML either) as it is, any
// other through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
