package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/ingest"
)

var start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestEventsAreValidSegment(t *testing.T) {
	t.Parallel()
	g := NewGen(1000, start, "test")
	names := map[string]int{}
	for i := 0; i < 2000; i++ {
		e := g.Event(i)
		b := e.AppendJSON(nil)
		m, err := ingest.Parse(b, "", i, start, time.Time{})
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, b)
		}
		if m.Kind != ingest.KindTrack || m.Name != e.Name || m.UserID != e.UserID() || m.MessageID != e.MessageID() {
			t.Fatalf("event %d parsed as %+v", i, m)
		}
		if !m.Timestamp.Equal(start.Add(time.Duration(i) * time.Millisecond)) {
			t.Fatalf("event %d: timestamp %s", i, m.Timestamp)
		}
		var props map[string]any
		if err := json.Unmarshal(m.Properties, &props); err != nil || len(props) < 3 {
			t.Fatalf("event %d: properties %s (%v)", i, m.Properties, err)
		}
		if e.Name == "order_completed" {
			if _, ok := props["revenue"].(float64); !ok {
				t.Fatalf("event %d: order_completed without a numeric revenue: %s", i, m.Properties)
			}
		}
		names[e.Name]++
	}
	for _, n := range []string{"page_viewed", "product_viewed", "cart_updated", "order_completed"} {
		if names[n] == 0 {
			t.Errorf("no %s in 2000 events: %v", n, names)
		}
	}
}

func TestMessageIDsAreUnique(t *testing.T) {
	t.Parallel()
	g := NewGen(0, start, "test")
	seen := make(map[string]bool, 200_000)
	users := map[int]bool{}
	for i := 0; i < 200_000; i++ {
		e := g.Event(i)
		id := e.MessageID()
		if seen[id] {
			t.Fatalf("event %d repeats messageId %s", i, id)
		}
		seen[id] = true
		users[e.User] = true
	}
	if len(users) < 80_000 {
		t.Errorf("200,000 events from 100,000 users touch %d users, want most of them", len(users))
	}
}

func TestBatchIsOneValidRequest(t *testing.T) {
	t.Parallel()
	g := NewGen(0, start, "test")
	body := g.AppendBatch(nil, 10, 510, start)
	if len(body) > ingest.MaxBatchBytes {
		t.Fatalf("a batch of 500 is %d bytes, over the limit of %d", len(body), ingest.MaxBatchBytes)
	}
	var env struct {
		Batch  []json.RawMessage `json:"batch"`
		SentAt string            `json:"sentAt"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.Batch) != 500 || env.SentAt != "2026-03-01T12:00:00.000Z" {
		t.Fatalf("batch of %d entries, sentAt %q", len(env.Batch), env.SentAt)
	}
	e := g.Event(10)
	if !bytes.Equal(env.Batch[0], e.AppendJSON(nil)) {
		t.Fatalf("first entry %s, want event 10", env.Batch[0])
	}
}

// The JSONL file is what `waymark import` reads, and the COPY rows are the
// same events.
func TestFilesDescribeTheSameEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	g := NewGen(50, start, "test")
	jsonl, text := filepath.Join(dir, "e.jsonl"), filepath.Join(dir, "e.copy")
	if _, err := g.WriteJSONL(jsonl, 1234); err != nil {
		t.Fatal(err)
	}
	size, err := g.WriteCopyText(text, 1234, start)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var msgs []ingest.Message
	err = ingest.ReadFile(f, start, 500, func(ms []ingest.Message) error {
		msgs = append(msgs, ms...)
		return nil
	}, func(fe *ingest.FieldError) { t.Errorf("bad line: %v", fe) })
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(text)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size {
		t.Fatalf("WriteCopyText says %d bytes, file has %d", size, len(b))
	}
	rows := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(msgs) != 1234 || len(rows) != 1234 {
		t.Fatalf("%d messages and %d rows, want 1234 each", len(msgs), len(rows))
	}
	for i, r := range rows {
		cols := strings.Split(r, "\t")
		m := msgs[i]
		if len(cols) != 8 {
			t.Fatalf("row %d has %d columns: %q", i, len(cols), r)
		}
		if cols[1] != m.MessageID || cols[2] != m.Kind || cols[3] != m.Name || cols[4] != string(m.Properties) || cols[5] != string(m.Context) {
			t.Fatalf("row %d = %q, message %+v", i, r, m)
		}
		ts, err := time.Parse("2006-01-02 15:04:05.000Z07:00", cols[6])
		if err != nil || !ts.Equal(m.Timestamp) {
			t.Fatalf("row %d occurred_at %q, message at %s", i, cols[6], m.Timestamp)
		}
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Summarise(ds)
	want := Latency{N: 100, P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, P999: 100 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Fatalf("Summarise = %+v, want %+v", got, want)
	}
}
