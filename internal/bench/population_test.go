package bench

import (
	"bufio"
	"encoding/csv"
	"os"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/ingest"
)

// The population's JSON lines and CSV files describe the same contacts
// and events, every line is one `waymark import` accepts, and the mix has
// the shop's customers in it.
func TestPopulationFilesAgree(t *testing.T) {
	t.Parallel()
	end := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	p := Population{Contacts: 400, End: end}
	f, err := p.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ user, event, at, id string }
	fromJSON := map[key]bool{}
	identifies, names := 0, map[string]int{}
	fh, err := os.Open(f.JSONL)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	line := 0
	for sc.Scan() {
		line++
		m, err := ingest.Parse(sc.Bytes(), "", line, end, time.Time{})
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if m.Timestamp.After(end) || m.Timestamp.Before(end.Add(-401*24*time.Hour)) {
			t.Errorf("line %d at %s, outside the 400 days to %s", line, m.Timestamp, end)
		}
		if m.Kind == ingest.KindIdentify {
			identifies++
			if m.Email == "" {
				t.Errorf("line %d: an identify without an email", line)
			}
			continue
		}
		names[m.Name]++
		fromJSON[key{m.UserID, m.Name, m.Timestamp.Format(time.RFC3339), m.MessageID}] = true
	}
	if line != f.Lines || identifies != p.Contacts || len(fromJSON) != f.Events || f.Lines != f.Events+p.Contacts {
		t.Fatalf("%d lines (%d said), %d identifies, %d distinct events (%d said)", line, f.Lines, identifies, len(fromJSON), f.Events)
	}
	if avg := float64(f.Events) / float64(p.Contacts); avg < 15 || avg > 25 {
		t.Errorf("%.1f events a contact, want about 20", avg)
	}
	for _, n := range []string{"page_viewed", "product_viewed", "cart_updated", "order_completed", "review_posted", "support_ticket_opened", "complaint_opened"} {
		if names[n] == 0 {
			t.Errorf("no %s in the population", n)
		}
	}
	read := func(path string) [][]string {
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		rows, err := csv.NewReader(fh).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if rows := read(f.ContactsCSV); len(rows) != p.Contacts+1 {
		t.Errorf("contacts.csv has %d rows, want a header and %d", len(rows), p.Contacts)
	}
	rows := read(f.EventsCSV)
	if len(rows) != f.Events+1 {
		t.Fatalf("events.csv has %d rows, want a header and %d", len(rows), f.Events)
	}
	for _, r := range rows[1:] {
		if !fromJSON[key{r[0], r[1], r[2], r[3]}] {
			t.Fatalf("events.csv row %v is not in the JSON lines", r)
		}
	}
}
