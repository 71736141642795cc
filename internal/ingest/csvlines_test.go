package ingest

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A broken quote is reported at the line it opens on, and the good lines
// it swallowed are still read.
func TestReadCSVBrokenQuoteKeepsTheLinesItSwallowed(t *testing.T) {
	t.Parallel()
	const hdr = "userId,event,timestamp,note\n"
	ev := func(u string) string { return u + ",page_viewed,2026-01-02T03:04:05Z,x\n" }
	cases := []struct {
		name     string
		in       string
		users    []string
		badLines []int
		msg      string // in the first rejection
	}{
		{
			name:     "unterminated quote to the end of the file",
			in:       hdr + ev("u1") + "u2,page_viewed,2026-01-02T03:04:05Z,\"oops\n" + ev("u3") + ev("u4"),
			users:    []string{"u1", "u3", "u4"},
			badLines: []int{3},
			msg:      "lines 4-5, which it had swallowed, are read on their own",
		},
		{
			name:     "a later quote closes it",
			in:       hdr + ev("u1") + "u2,page_viewed,2026-01-02T03:04:05Z,\"oops\n" + ev("u3") + "u4,page_viewed,2026-01-02T03:04:05Z,\"fine\"\n" + ev("u5"),
			users:    []string{"u1", "u3", "u4", "u5"},
			badLines: []int{3},
			msg:      "not closed before line 5",
		},
		{
			name:     "the swallowed row runs to a field count that does not fit",
			in:       hdr + ev("u1") + "u2,page_viewed,\"2026-01-02T03:04:05Z\n" + ev("u3") + "u4,\"a\",b\n" + ev("u5"),
			users:    []string{"u1", "u3", "u5"},
			badLines: []int{3, 5},
			msg:      "line",
		},
		{
			name:     "blank lines and no final newline",
			in:       hdr + "\n" + ev("u1") + "\n\nu2,page_viewed,2026-01-02T03:04:05Z,\"oops\n" + strings.TrimSuffix(ev("u3"), "\n"),
			users:    []string{"u1", "u3"},
			badLines: []int{6},
			msg:      "line 7, which it had swallowed, is read on its own",
		},
		{
			name:     "a multi-line value that closes properly is one row",
			in:       hdr + ev("u1") + "u2,page_viewed,2026-01-02T03:04:05Z,\"two\nlines\"\n" + ev("u3"),
			users:    []string{"u1", "u2", "u3"},
			badLines: nil,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var users []string
			var bad []*FieldError
			err := ReadFile(strings.NewReader(c.in), time.Unix(0, 0), 100, func(ms []Message) error {
				for _, m := range ms {
					users = append(users, m.UserID)
				}
				return nil
			}, func(fe *FieldError) { bad = append(bad, fe) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(users, c.users) {
				t.Errorf("stored users %v, want %v", users, c.users)
			}
			var lines []int
			for _, fe := range bad {
				lines = append(lines, fe.Index)
			}
			if !slices.Equal(lines, c.badLines) {
				t.Errorf("rejected lines %v, want %v (%v)", lines, c.badLines, bad)
			}
			if len(bad) > 0 && !strings.Contains(bad[0].Msg, c.msg) {
				t.Errorf("rejection %q does not say %q", bad[0].Msg, c.msg)
			}
		})
	}
}
