package web

import (
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Hostile input (issue 23): a NUL character or invalid UTF-8 in a query
// parameter, the path or a JSON field reached PostgreSQL, which refused it
// (500 and an ERROR in the log). Such requests are refused first, with a
// 400 naming the field.

// textOK reports whether s is text PostgreSQL stores: valid UTF-8 without
// NUL.
func textOK(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// badParam names the first part of r's URL that is not text: the path
// ("path"), or a query parameter (its name, or "query" when the name
// itself is not text); "" when all are.
func badParam(r *http.Request) string {
	if !textOK(r.URL.Path) {
		return "path"
	}
	for k, vs := range r.URL.Query() {
		if !textOK(k) {
			return "query"
		}
		for _, v := range vs {
			if !textOK(v) {
				return k
			}
		}
	}
	return ""
}

// badField names the first string of a decoded JSON body v (by its JSON
// field path) that holds a NUL character; encoding/json has already
// turned invalid UTF-8 into U+FFFD.
func badField(v any) string {
	return nulIn(reflect.ValueOf(v), "")
}

func nulIn(v reflect.Value, path string) string {
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return nulIn(v.Elem(), path)
		}
	case reflect.String:
		if strings.IndexByte(v.String(), 0) >= 0 {
			if path == "" {
				return "body"
			}
			return path
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if p := nulIn(v.Field(i), join(name)); p != "" {
				return p
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			k := it.Key()
			if k.Kind() == reflect.String && strings.IndexByte(k.String(), 0) >= 0 {
				return join("(key)")
			}
			if p := nulIn(it.Value(), join(k.String())); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			if p := nulIn(v.Index(i), path+"["+strconv.Itoa(i)+"]"); p != "" {
				return p
			}
		}
	}
	return ""
}

// errDryRunBusy refuses a dry run while another runs: each evaluates every
// contact (seconds of CPU at a million), so they run one at a time.
var errDryRunBusy = errors.New("a dry run is already running: retry in a few seconds")

// dryRunSlot takes the one dry run slot: it returns its release, or
// errDryRunBusy while another dry run holds it.
func (s *Server) dryRunSlot() (release func(), err error) {
	select {
	case s.dryRuns <- struct{}{}:
		return func() { <-s.dryRuns }, nil
	default:
		return nil, errDryRunBusy
	}
}

// noListing serves files from h, and 404 for a directory (a path ending
// in / or empty), instead of listing it.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
