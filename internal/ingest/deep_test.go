package ingest

import (
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/clock"
)

// An entry nested too deeply is skipped by a scan without recursion, so
// that it is refused alone and the rest of its batch is read (issue 23: one
// poisoned entry lost its whole batch). The skip accepts exactly what
// encoding/json accepts, whatever the depth.
func TestDeepEntrySkippedExactly(t *testing.T) {
	t.Parallel()
	open, shut := strings.Repeat(`[`, 70), strings.Repeat(`]`, 70)
	good := `{"type":"track","userId":"u","event":"x"}`
	for _, c := range []struct {
		entry string
		ok    bool
	}{
		{`{"a":` + open + `1` + shut + `}`, true},
		{`{"a":` + open + `"]]]}}}", {"x": [true, false, null, -1.5e3]}` + shut + `}`, true},
		{`{"a":` + open + `{}, [], {"k": {"l": []}}` + shut + `, "b": 2}`, true},
		{`{"a":` + open + `1,` + shut + `}`, false},        // trailing comma
		{`{"a":` + open + `1` + shut[1:] + `}}`, false},    // mismatched
		{`{"a":` + open + `{"k" 1}` + shut + `}`, false},   // no colon
		{`{"a":` + open + `tru` + shut + `}`, false},       // bad literal
		{`{"a":` + open + "\"a\x01\"" + shut + `}`, false}, // control character
	} {
		body := []byte(`{"batch":[` + good + `,` + c.entry + `,` + good + `]}`)
		checkEnvelopeScan(t, body)
		env := &envelope{}
		if bad := decodeEnvelope(body, env); (bad == nil) != c.ok {
			t.Errorf("%.80s: refused whole %v, want %v", c.entry, bad != nil, !c.ok)
			continue
		}
		if !c.ok {
			continue
		}
		msgs, _, rejected, _ := parseEntries(env, clock.Now())
		if len(msgs) != 2 || len(rejected) != 1 || rejected[0].Field != "batch[1]" || !strings.Contains(rejected[0].Msg, "nested deeper") {
			t.Errorf("%.80s: %d stored, rejected %v; want the deep entry alone refused", c.entry, len(msgs), rejected)
		}
	}
}
