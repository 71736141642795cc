package ingest

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The fast path of decoding: one validating pass over the body that finds
// each entry's top-level fields without copying or decoding them. It
// accepts exactly the JSON encoding/json accepts, and fills the same
// fields (names matched exactly, else case-insensitively; the last of a
// repeated field wins). When the body is not valid JSON, the caller decodes
// it with encoding/json instead, whose errors say what is wrong and where.
//
// Unlike encoding/json, it refuses values nested deeper than MaxDepth:
// nothing in an event needs that much, and PostgreSQL's jsonb (and every
// reader after it) recurses on nesting.

// MaxDepth is how deeply an entry's objects and arrays may nest (the entry
// itself is level 1).
const MaxDepth = 64

// scanProblem is why a scan gave up.
type scanProblem int

const (
	scanOK      scanProblem = iota
	scanInvalid             // not valid JSON (or not the expected shape): ask encoding/json
	scanTooDeep             // valid or not, nested deeper than the limit: refused
)

type scanner struct {
	b     []byte
	i     int
	depth int
	limit int
	deep  bool // the depth limit was hit
	// field is the entry field being scanned; big and bigField note the
	// first number that cannot be stored, and its field.
	field    string
	big      bool
	bigField string
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str scans a string starting at s.i (a '"'); escaped reports whether it
// holds escapes.
func (s *scanner) str() (ok, escaped bool) {
	s.i++ // the quote
	b := s.b
	for i := s.i; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return true, escaped
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return false, escaped
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return false, escaped
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false, escaped
					}
				}
				i += 6
			default:
				return false, escaped
			}
		case c < 0x20:
			return false, escaped
		default:
			i++
		}
	}
	return false, escaped
}

func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// Numbers that cannot be stored are refused: beyond the range of a 64-bit
// float (1e400, or 400 nines: PostgreSQL's jsonb takes them, but every
// float8 cast of them fails — a sum() over them stopped evaluation for
// everyone), so small they round to 0 (1e-400: the same), or ones jsonb
// blows up (1e100000 is stored as 100,001 digits): an exponent beyond
// ±maxExponent, or more than maxDecimals digits after the point.
const (
	maxExponent = 400
	maxDecimals = 1000
)

func (s *scanner) number() bool {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.b) {
		return false
	}
	if s.b[s.i] == '0' {
		s.i++
	} else if !s.digits() {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		start := s.i
		if !s.digits() {
			return false
		}
		if s.i-start > maxDecimals {
			s.outOfRange()
		}
	}
	exp := false
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		exp = true
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		start := s.i
		if !s.digits() {
			return false
		}
		e := s.b[start:s.i]
		for len(e) > 1 && e[0] == '0' {
			e = e[1:]
		}
		if len(e) > 3 || len(e) == 3 && string(e) > strconv.Itoa(maxExponent) {
			s.outOfRange()
		}
	}
	// Without an exponent, up to 308 characters always fit a float64.
	if !s.big && (exp || s.i-start > 308) && !fitsFloat(s.b[start:s.i]) {
		s.outOfRange()
	}
	return true
}

// fitsFloat reports whether the JSON number n is a finite float64 that is
// 0 only if n is: what PostgreSQL's float8 takes.
func fitsFloat(n []byte) bool {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return false
	}
	if f != 0 {
		return true
	}
	for _, c := range n {
		if c == 'e' || c == 'E' {
			break
		}
		if c >= '1' && c <= '9' {
			return false // underflow
		}
	}
	return true
}

// outOfRange notes a number that cannot be stored, in the field being
// scanned.
func (s *scanner) outOfRange() {
	if !s.big {
		s.big, s.bigField = true, s.field
	}
}

// numberProblem says what is wrong with a number outOfRange noted.
func numberProblem() string {
	return "a number is out of range: it must fit a 64-bit float (at most about ±1.8e308, and not so small it rounds to 0), with at most " + strconv.Itoa(maxDecimals) + " decimals"
}

// numberPath finds, in the JSON value v of a field, the first number
// outOfRange would note, and returns where it is ("revenue",
// "items[2].price"); "" if none is found.
func numberPath(v json.RawMessage) string {
	d := json.NewDecoder(bytes.NewReader(v))
	d.UseNumber()
	type level struct {
		object bool
		key    string
		index  int
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			} else {
				b.WriteString("[" + strconv.Itoa(l.index-1) + "]")
			}
		}
		return b.String()
	}
	// value is called before each value: it moves the position on.
	expectKey := false
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if n := len(stack); n > 0 {
			top := &stack[n-1]
			if top.object && expectKey {
				if k, ok := tok.(string); ok {
					top.key = k
					expectKey = false
					continue
				}
			} else if !top.object {
				if dl, ok := tok.(json.Delim); !ok || dl != ']' {
					top.index++
				}
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, level{object: true})
				expectKey = true
				continue
			case '[':
				stack = append(stack, level{})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case json.Number:
			s := scanner{b: []byte(t), limit: 1}
			if s.number(); s.big {
				return path()
			}
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			expectKey = true
		}
	}
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// value scans one value starting at s.i (after white space).
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		ok, _ := s.str()
		return ok
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array(nil)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return false
}

func (s *scanner) enter() bool {
	s.depth++
	if s.depth > s.limit {
		s.deep = true
		return false
	}
	return true
}

// object scans an object starting at s.i (a '{'). For each key, val (if
// set) scans the value, starting at s.i; without val, values are scanned
// and skipped. Keys reach val unescaped.
func (s *scanner) object(val func(key []byte) bool) bool {
	if !s.enter() {
		return false
	}
	s.i++ // {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		ks := s.i
		ok, esc := s.str()
		if !ok {
			return false
		}
		key := s.b[ks+1 : s.i-1]
		if esc && val != nil {
			var k string
			if json.Unmarshal(s.b[ks:s.i], &k) != nil {
				return false
			}
			key = []byte(k)
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if val != nil {
			if !val(key) {
				return false
			}
		} else if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// array scans an array starting at s.i (a '['). elem (if set) scans each
// element, starting at s.i.
func (s *scanner) array(elem func() bool) bool {
	if !s.enter() {
		return false
	}
	s.i++ // [
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		if elem != nil {
			if !elem() {
				return false
			}
		} else if !s.value() {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// skip scans one value starting at s.i as value does — the same grammar —
// but without recursion and without a depth limit, for an entry nested too
// deeply: it is refused alone while the rest of its batch is read.
func (s *scanner) skip() bool {
	var stack []byte // the open '{' and '['
	key := func() bool {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		if ok, _ := s.str(); !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		return true
	}
	for {
		// A value.
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		opened := false
		switch c := s.b[s.i]; {
		case c == '{' || c == '[':
			s.i++
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == c+2 { // '}' is '{'+2, ']' is '['+2
				s.i++
				break
			}
			stack = append(stack, c)
			if c == '{' && !key() {
				return false
			}
			opened = true
		case c == '"':
			if ok, _ := s.str(); !ok {
				return false
			}
		case c == 't' || c == 'f' || c == 'n' || c == '-' || c >= '0' && c <= '9':
			if !s.value() { // a scalar: no nesting
				return false
			}
		default:
			return false
		}
		if opened {
			continue
		}
		// After a value: close what ends here, or go on to the next one.
		for {
			if len(stack) == 0 {
				return true
			}
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			top, c := stack[len(stack)-1], s.b[s.i]
			if c == top+2 {
				s.i++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				return false
			}
			s.i++
			if top == '{' && !key() {
				return false
			}
			break
		}
	}
}

// span scans a value and returns its text.
func (s *scanner) span() (json.RawMessage, bool) {
	vs := s.i
	if !s.value() {
		return nil, false
	}
	return s.b[vs:s.i:s.i], true
}

// rawFields are raw's fields by their JSON names.
var rawFields = []string{"type", "userId", "anonymousId", "previousId", "groupId", "messageId", "event", "name", "category", "properties", "traits", "context", "timestamp", "originalTimestamp", "sentAt"}

func (r *raw) field(key string) *json.RawMessage {
	switch key {
	case "type":
		return &r.Type
	case "userId":
		return &r.UserID
	case "anonymousId":
		return &r.AnonymousID
	case "previousId":
		return &r.PreviousID
	case "groupId":
		return &r.GroupID
	case "messageId":
		return &r.MessageID
	case "event":
		return &r.Event
	case "name":
		return &r.Name
	case "category":
		return &r.Category
	case "properties":
		return &r.Properties
	case "traits":
		return &r.Traits
	case "context":
		return &r.Context
	case "timestamp":
		return &r.Timestamp
	case "originalTimestamp":
		return &r.OriginalTimestamp
	case "sentAt":
		return &r.SentAt
	}
	return nil
}

// lookup finds the field named key, matched as encoding/json matches it.
func (r *raw) lookup(key []byte) (string, *json.RawMessage) {
	for _, name := range rawFields {
		if string(key) == name {
			return name, r.field(name)
		}
	}
	for _, name := range rawFields {
		if bytes.EqualFold(key, []byte(name)) {
			return name, r.field(name)
		}
	}
	return "", nil
}

// entry scans the entry at s.i into r. An entry that is not an object is
// left for encoding/json to reject (ok, but isObject false).
func (s *scanner) entry(r *raw) (isObject, ok bool) {
	s.big, s.bigField, s.field = false, "", ""
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		_, ok := s.span()
		return false, ok
	}
	ok = s.object(func(key []byte) bool {
		name, f := r.lookup(key)
		if f == nil {
			return s.value()
		}
		s.field = name
		v, ok := s.span()
		s.field = ""
		// As encoding/json: null leaves a RawMessage as JSON null.
		*f = v
		return ok
	})
	if s.big {
		r.bigNumber, r.bigField = true, s.bigField
	}
	s.big = false
	return true, ok
}

func problem(s *scanner, ok bool) scanProblem {
	switch {
	case s.deep:
		return scanTooDeep
	case !ok:
		return scanInvalid
	}
	return scanOK
}

// scanRaw decodes one entry into r, the fast way.
func scanRaw(body []byte, r *raw) scanProblem {
	s := scanner{b: body, limit: MaxDepth}
	s.ws()
	isObj, ok := s.entry(r)
	if ok {
		s.ws()
		ok = s.i == len(s.b) && isObj
	}
	return problem(&s, ok)
}

// envelope is a /v1/batch body, scanned.
type envelope struct {
	entries  []json.RawMessage // each entry's text
	raws     []raw             // and its fields, if it is an object
	objects  []bool            // whether the entry is an object
	sentAt   json.RawMessage
	writeKey string
	context  json.RawMessage
	hasBatch bool
	// contextBig: the context holds a number that cannot be stored.
	contextBig bool
	deepAt     int   // the entry nested too deeply, when scanEnvelope says scanTooDeep; -1 if outside the entries
	deep       []int // entries nested too deeply, skipped (each is refused alone)
}

var envFields = []string{"batch", "sentAt", "writeKey", "context"}

// scanEnvelope decodes a batch body, the fast way: each entry is scanned
// once, its fields found on the way.
func scanEnvelope(body []byte, env *envelope) scanProblem {
	// The envelope and the batch array are two more levels.
	s := scanner{b: body, limit: MaxDepth + 2}
	env.deepAt = -1
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return scanInvalid
	}
	ok := s.object(func(key []byte) bool {
		name := ""
		for _, f := range envFields {
			if string(key) == f {
				name = f
				break
			}
		}
		if name == "" {
			for _, f := range envFields {
				if bytes.EqualFold(key, []byte(f)) {
					name = f
					break
				}
			}
		}
		switch name {
		case "batch":
			if s.i < len(s.b) && s.b[s.i] == 'n' {
				env.hasBatch, env.entries, env.raws, env.objects = false, nil, nil, nil
				return s.literal("null")
			}
			if s.i >= len(s.b) || s.b[s.i] != '[' {
				return false // encoding/json's error names the problem
			}
			env.hasBatch = true
			env.entries, env.raws, env.objects, env.deep = env.entries[:0], env.raws[:0], env.objects[:0], env.deep[:0]
			return s.array(func() bool {
				vs, depth := s.i, s.depth
				env.raws = append(env.raws, raw{})
				isObj, ok := s.entry(&env.raws[len(env.raws)-1])
				if !ok && s.deep {
					// An entry nested too deeply is refused alone (its
					// own scan says so): the rest of the batch is read.
					s.i, s.depth, s.deep = vs, depth, false
					if !s.skip() {
						env.deepAt = len(env.entries)
						return false
					}
					env.raws[len(env.raws)-1] = raw{}
					env.entries = append(env.entries, s.b[vs:s.i:s.i])
					env.objects = append(env.objects, false)
					env.deep = append(env.deep, len(env.entries)-1)
					return true
				}
				if !ok {
					return false
				}
				env.entries = append(env.entries, s.b[vs:s.i:s.i])
				env.objects = append(env.objects, isObj)
				return true
			})
		case "sentAt":
			v, ok := s.span()
			env.sentAt = v
			return ok
		case "writeKey":
			v, ok := s.span()
			if !ok {
				return false
			}
			switch v[0] {
			case 'n':
				// As encoding/json: null leaves the string alone.
				return true
			case '"':
				k, err := unquote(v)
				if err != nil {
					return false
				}
				env.writeKey = k
				return true
			}
			return false // not a string: encoding/json's error
		case "context":
			s.big, s.field = false, "context"
			v, ok := s.span()
			env.context, env.contextBig = v, s.big
			s.big, s.field = false, ""
			return ok
		}
		return s.value()
	})
	if ok {
		s.ws()
		ok = s.i == len(s.b)
	}
	return problem(&s, ok)
}

// unquote decodes a valid JSON string as encoding/json does (invalid UTF-8
// becomes U+FFFD).
func unquote(v []byte) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		in := v[1 : len(v)-1]
		if bytes.IndexByte(in, '\\') < 0 && bytes.IndexByte(in, '"') < 0 && utf8.Valid(in) && !hasControl(in) {
			return string(in), nil
		}
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

// depthError names where an entry nests too deeply.
func depthError() string {
	return "nested deeper than " + strconv.Itoa(MaxDepth) + " levels"
}

func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}
