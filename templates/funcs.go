package templates

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"
	"unicode"
)

// Limits that keep one render bounded whatever the marketer writes.
const (
	// maxSourceSize is the largest accepted source of one part.
	maxSourceSize = 256 << 10
	// maxOutputSize is the largest rendered part.
	maxOutputSize = 1 << 20
	// maxValueSize is the largest string a helper may produce; it stops
	// exponential growth through variables ({{$x = printf "%s%s" $x $x}}).
	maxValueSize = 64 << 10
	// maxWork is the work one render may do in loops and in helpers that
	// build strings: a loop iteration costs 4 plus the number of nodes in
	// its body, a built string one unit per 64 bytes plus one. A product
	// list of a hundred items costs a few thousand; the most expensive
	// render stays in the tens of milliseconds.
	maxWork = 250_000
	// maxArgs is the most values print, println, html, js and urlquery
	// take, and the most verbs a printf format holds; maxWidth is the
	// largest width or precision of a printf verb. fmt builds its whole
	// result before the size check sees it, so these bound what one call
	// can build first: maxArgs contact values, or maxArgs paddings of
	// maxWidth (without them, %[1]v repeated through a 256 KB template,
	// or %999999d repeated, built gigabytes before being refused).
	maxArgs  = 32
	maxWidth = maxValueSize
)

var (
	errOutputTooLarge = fmt.Errorf("rendered output exceeds %d bytes", maxOutputSize)
	errValueTooLarge  = fmt.Errorf("value exceeds %d bytes", maxValueSize)
	errTooMuchWork    = errors.New("too much work: the loops or the text they build exceed the render's budget")
)

// Names of the functions the compiler inserts into parse trees. Marketers
// cannot call them: the static checker only accepts names from userFuncs.
const (
	fnStep   = "_wm_step"   // {{if _wm_step $ N}}{{end}} at the top of every range body
	fnStr    = "_wm_str"    // appended to text actions whose value may be nil
	fnFinite = "_wm_finite" // appended to range pipelines of unknown type
)

// helpers holds the per-Compiled state of the helper functions: a cache of
// time zones (dateIn) so that a render does not read the zone database
// again.
type helpers struct {
	zones sync.Map // string → *time.Location
}

// funcMap returns the functions a template can call. The builtins of
// text/template (and, or, not, len, index, slice, eq, ...) stay; the ones
// that build strings are replaced by size-checked equivalents.
func (h *helpers) funcMap() map[string]any {
	return map[string]any{
		// Marketer helpers.
		"default": dflt,
		"title":   title,
		"upper":   upper,
		"lower":   lower,
		"trim":    trim,
		"date":    date,
		"dateIn":  h.dateIn,
		"money":   money,
		"trait":   trait,

		// Builtins that build strings, capped and charged to the render.
		"print":    capped(fmt.Sprint),
		"println":  capped(fmt.Sprintln),
		"printf":   printf,
		"html":     capped(texttemplate.HTMLEscaper),
		"js":       capped(texttemplate.JSEscaper),
		"urlquery": capped(texttemplate.URLQueryEscaper),

		// Inserted by the compiler.
		fnStep:   step,
		fnStr:    str,
		fnFinite: finite,
	}
}

// chargedFuncs are the helpers that build strings: the compiler passes
// them the render's data ($) first, so that they can charge their work.
var chargedFuncs = map[string]bool{
	"print": true, "println": true, "printf": true, "html": true, "js": true, "urlquery": true,
	"title": true, "upper": true, "lower": true, "trim": true, "trait": true,
}

// charge adds the cost of building a string of n bytes to the render's
// work.
func charge(d *execData, n int) error {
	if d == nil {
		return errors.New("internal: render state missing")
	}
	if n > maxValueSize {
		return errValueTooLarge
	}
	d.work += 1 + n>>6
	if d.work > maxWork {
		return errTooMuchWork
	}
	return nil
}

func capped(f func(...any) string) func(*execData, ...any) (string, error) {
	return func(d *execData, args ...any) (string, error) {
		if len(args) > maxArgs {
			return "", fmt.Errorf("%d values, at most %d", len(args), maxArgs)
		}
		s := f(args...)
		if err := charge(d, len(s)); err != nil {
			return "", err
		}
		return s, nil
	}
}

func printf(d *execData, format string, args ...any) (string, error) {
	if len(args) > maxArgs {
		return "", fmt.Errorf("%d values, at most %d", len(args), maxArgs)
	}
	if err := checkFormat(format); err != nil {
		return "", err
	}
	s := fmt.Sprintf(format, args...)
	if err := charge(d, len(s)); err != nil {
		return "", err
	}
	return s, nil
}

// step charges one range iteration, whose body has n nodes.
func step(d *execData, n int) (bool, error) {
	if d == nil {
		return false, errors.New("internal: render state missing")
	}
	d.work += 4 + n
	if d.work > maxWork {
		return false, errTooMuchWork
	}
	return false, nil
}

// finite lets only finite collections through to range.
func finite(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch v.(type) {
	case []any, map[string]any, []string:
		return v, nil
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		return v, nil
	}
	return nil, fmt.Errorf("range over %T: only lists and maps can be ranged over", v)
}

// str prints a value the way text/template does, except that a missing
// value (a trait the contact does not have) prints as nothing rather than
// "<no value>".
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	case fmt.Stringer, error:
		return fmt.Sprint(v)
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return ""
		}
		rv = rv.Elem()
	}
	return fmt.Sprint(rv.Interface())
}

// toString turns a helper's argument into text; nil is empty.
func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return str(v)
}

// isEmpty reports whether default and trait should use their fallback:
// nil, a blank string, an empty list or map, a nil pointer. Numbers and
// booleans are never empty: 0 orders is a value.
func isEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(v) == ""
	case float64, int, int64, bool:
		return false
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	case reflect.String:
		return strings.TrimSpace(rv.String()) == ""
	}
	return false
}

// dflt: {{default "there" .Contact.FirstName}} or
// {{.Contact.FirstName | default "there"}}.
func dflt(fallback any, given ...any) any {
	if len(given) == 0 || isEmpty(given[len(given)-1]) {
		return fallback
	}
	return given[len(given)-1]
}

// trait: {{trait "company" "your team"}}.
func trait(d *execData, name string, fallback ...any) (any, error) {
	if len(fallback) > 1 {
		return nil, errors.New("trait takes a name and at most one default")
	}
	if err := charge(d, 0); err != nil {
		return nil, err
	}
	v := d.Contact.Traits[name]
	if isEmpty(v) {
		if len(fallback) == 1 {
			return fallback[0], nil
		}
		return nil, nil
	}
	return v, nil
}

func upper(d *execData, v any) (string, error) {
	s := strings.ToUpper(toString(v))
	return s, charge(d, len(s))
}

func lower(d *execData, v any) (string, error) {
	s := strings.ToLower(toString(v))
	return s, charge(d, len(s))
}

func trim(d *execData, v any) (string, error) {
	s := strings.TrimSpace(toString(v))
	return s, charge(d, len(s))
}

// title upper-cases the first letter of every word and leaves the rest:
// "mary-jane o'neil" → "Mary-Jane O'neil".
func title(d *execData, v any) (string, error) {
	s := toString(v)
	if err := charge(d, len(s)); err != nil {
		return "", err
	}
	start := true
	for i, r := range s {
		if start && unicode.IsLower(r) {
			return titleFrom(s, i), nil
		}
		start = !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '\'' || r == '’')
	}
	return s, nil
}

func titleFrom(s string, i int) string {
	var b strings.Builder
	b.Grow(len(s) + 4)
	b.WriteString(s[:i])
	start := true
	for _, r := range s[i:] {
		if start {
			b.WriteRune(unicode.ToTitle(r))
		} else {
			b.WriteRune(r)
		}
		start = !(unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '\'' || r == '’')
	}
	return b.String()
}

// dateLayouts are the string forms date and dateIn understand.
var dateLayouts = [...]string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006-01-02",
}

// toTime turns a date value into a time: a time.Time, a string in one of
// dateLayouts, or a number of seconds since the Unix epoch. ok is false
// for nil, an empty string and the zero time, which format as nothing.
func toTime(v any) (t time.Time, ok bool, err error) {
	switch v := v.(type) {
	case nil:
		return t, false, nil
	case time.Time:
		return v, !v.IsZero(), nil
	case *time.Time:
		if v == nil || v.IsZero() {
			return t, false, nil
		}
		return *v, true, nil
	case string:
		s := strings.TrimSpace(v)
		if s == "" {
			return t, false, nil
		}
		for _, layout := range dateLayouts {
			if t, err := time.Parse(layout, s); err == nil {
				return t, true, nil
			}
		}
		return t, false, fmt.Errorf("%q is not a date (want e.g. 2006-01-02 or RFC 3339)", s)
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1e12 {
			return t, false, fmt.Errorf("%v is not a Unix time", v)
		}
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true, nil
	case int:
		return time.Unix(int64(v), 0).UTC(), true, nil
	case int64:
		return time.Unix(v, 0).UTC(), true, nil
	}
	return t, false, fmt.Errorf("cannot format %T as a date", v)
}

func formatTime(layout string, t time.Time) (string, error) {
	if len(layout) > 256 {
		return "", errors.New("date layout longer than 256 bytes")
	}
	return t.Format(layout), nil
}

// date: {{date "2 January 2006" .Offer.ExpiresAt}} or
// {{.Offer.ExpiresAt | date "2 January 2006"}}.
func date(layout string, v any) (string, error) {
	t, ok, err := toTime(v)
	if !ok || err != nil {
		return "", err
	}
	return formatTime(layout, t)
}

// dateIn: {{dateIn "2 January 2006 15:04" "Europe/Paris" .Offer.ExpiresAt}}.
func (h *helpers) dateIn(layout, zone string, v any) (string, error) {
	t, ok, err := toTime(v)
	if !ok || err != nil {
		return "", err
	}
	loc, err := h.location(zone)
	if err != nil {
		return "", err
	}
	return formatTime(layout, t.In(loc))
}

// location resolves an IANA time zone name. "Local" is refused: a
// template must not depend on the machine it runs on.
func (h *helpers) location(zone string) (*time.Location, error) {
	if zone == "" || zone == "UTC" {
		return time.UTC, nil
	}
	if l, ok := h.zones.Load(zone); ok {
		return l.(*time.Location), nil
	}
	if zone == "Local" || len(zone) > 64 {
		return nil, fmt.Errorf("unknown time zone %q", zone)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", zone)
	}
	h.zones.Store(zone, loc)
	return loc, nil
}

// currencySymbols are the currencies written with a leading symbol; the
// others get their code after the amount.
var currencySymbols = map[string]string{"EUR": "€", "USD": "$", "GBP": "£"}

// money: {{money 1234.5 "EUR"}} → €1,234.50; {{money 10 "CHF"}} → 10.00 CHF.
func money(amount any, currency string) (string, error) {
	var f float64
	switch a := amount.(type) {
	case nil:
		return "", nil
	case float64:
		f = a
	case float32:
		f = float64(a)
	case int:
		f = float64(a)
	case int64:
		f = float64(a)
	case int32:
		f = float64(a)
	case uint:
		f = float64(a)
	case uint64:
		f = float64(a)
	case string:
		s := strings.TrimSpace(a)
		if s == "" {
			return "", nil
		}
		var err error
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return "", fmt.Errorf("%q is not a number", a)
		}
	default:
		return "", fmt.Errorf("cannot format %T as an amount", amount)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) >= 1e15 {
		return "", fmt.Errorf("%v is not an amount", f)
	}
	code := strings.ToUpper(strings.TrimSpace(currency))
	if len(code) > 8 {
		return "", fmt.Errorf("%q is not a currency code", currency)
	}
	var buf [64]byte
	b := buf[:0]
	if f < 0 && math.Round(f*100) != 0 {
		b = append(b, '-')
	}
	sym, prefix := currencySymbols[code]
	if prefix {
		b = append(b, sym...)
	}
	b = appendGrouped(b, math.Abs(f))
	if !prefix && code != "" {
		b = append(b, ' ')
		b = append(b, code...)
	}
	return string(b), nil
}

// appendGrouped appends f with two decimals and thousands separators.
func appendGrouped(b []byte, f float64) []byte {
	var num [40]byte
	digits := strconv.AppendFloat(num[:0], f, 'f', 2, 64)
	intPart := digits[:len(digits)-3]
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, c)
	}
	return append(b, digits[len(digits)-3:]...)
}

// checkFormat refuses a printf format that could build a large string
// before its size is checked: more than maxArgs verbs, a width or
// precision over maxWidth, or one taken from the arguments (*).
func checkFormat(format string) error {
	verbs := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			continue
		}
		verbs++
		if verbs > maxArgs {
			return fmt.Errorf("the format has more than %d verbs", maxArgs)
		}
		// Flags, argument indexes, width, precision, up to the verb.
		n := 0
		for ; i < len(format); i++ {
			c := format[i]
			switch {
			case c >= '0' && c <= '9':
				n = min(n*10+int(c-'0'), maxWidth+1)
				if n > maxWidth {
					return errValueTooLarge
				}
				continue
			case c == '*':
				return fmt.Errorf("widths and precisions taken from the values (*) are not allowed")
			case c == '[':
				// An argument index: its digits are not a width.
				for i < len(format) && format[i] != ']' {
					i++
				}
				n = 0
				continue
			case c == '.' || c == '+' || c == '-' || c == '#' || c == ' ':
				n = 0
				continue
			}
			break
		}
	}
	return nil
}
