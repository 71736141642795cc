package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/waymark/waymark/internal/export"
	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/store"
)

// exportJourney moves contacts by their plan trait, so a tick spreads them
// over three stages.
const exportJourney = `rules:
  - name: pro
    from: [awareness]
    to: consideration
    when: traits.plan == "pro" || traits.plan == "vip"
  - name: vip
    from: [consideration]
    to: retention
    when: traits.plan == "vip"
segments:
  - name: paying
    when: traits.plan == "pro" || traits.plan == "vip"
  - name: big
    when: traits.plan == "vip"
`

// exportContacts are 25 contacts: 12 free, 8 pro, 5 vip, one with
// characters CSV must quote, one without an email.
func exportContacts() string {
	var b strings.Builder
	b.WriteString("userId,email,plan,name\n")
	for i := 0; i < 25; i++ {
		plan := map[bool]string{true: "free", false: "pro"}[i < 12]
		if i >= 20 {
			plan = "vip"
		}
		email, name := fmt.Sprintf("user%02d@example.com", i), fmt.Sprintf("User %d", i)
		switch i {
		case 3:
			name = `"Quoted, with a comma", and
a line break — and ünïcode`
		case 4:
			email = ""
		}
		fmt.Fprintf(&b, "u%02d,%s,%s,%s\n", i, email, plan, csvQuote(name))
	}
	return b.String()
}

func csvQuote(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// dbContacts reads the contacts as an export should write them.
func dbContacts(t *testing.T, pool *pgxpool.Pool, stage string) []export.Contact {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, user_id, email, stage, stage_entered_at AS since, status, traits,
		ARRAY(SELECT segment FROM segment_members m WHERE m.contact_id = c.id ORDER BY segment) AS segments
		FROM contacts c WHERE merged_into IS NULL AND ($1 = '' OR stage = $1) ORDER BY id`, stage)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[export.Contact])
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// normalised makes exported and stored contacts comparable: times in UTC,
// traits as decoded JSON.
func normalised(t *testing.T, cs []export.Contact) []map[string]any {
	t.Helper()
	out := make([]map[string]any, len(cs))
	for i, c := range cs {
		c.Since = c.Since.UTC()
		b, _ := json.Marshal(c)
		if err := json.Unmarshal(b, &out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func parseJSONL(t *testing.T, s string) []export.Contact {
	t.Helper()
	var cs []export.Contact
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		var c export.Contact
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		cs = append(cs, c)
	}
	return cs
}

func parseCSV(t *testing.T, s string) []export.Contact {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || !reflect.DeepEqual(recs[0], export.Header) {
		t.Fatalf("CSV header %v, want %v", recs[:min(1, len(recs))], export.Header)
	}
	var cs []export.Contact
	for _, r := range recs[1:] {
		var c export.Contact
		fmt.Sscan(r[0], &c.ID)
		if r[1] != "" {
			c.UserID = &r[1]
		}
		if r[2] != "" {
			c.Email = &r[2]
		}
		c.Stage, c.Status, c.Traits, c.Segments = r[3], r[5], json.RawMessage(r[6]), strings.Fields(r[7])
		var err error
		if c.Since, err = time.Parse(time.RFC3339Nano, r[4]); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

// An export of each stage holds as many contacts as `waymark stages`
// counts there, each with its stored data, in CSV and JSON lines, to
// stdout or a file; the API streams the same.
func TestExportMatchesStages(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	journey := writeFile(t, "journey.yaml", exportJourney)
	for _, args := range [][]string{
		{"import", writeFile(t, "contacts.csv", exportContacts())},
		{"apply", "-f", journey},
		{"tick"},
	} {
		if _, errOut, err := runWaymark(t, url, args...); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, errOut)
		}
	}
	out, errOut, err := runWaymark(t, url, "stages", "--json")
	if err != nil {
		t.Fatalf("stages: %v\n%s", err, errOut)
	}
	var counts map[string]int
	if err := json.Unmarshal([]byte(out), &counts); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"awareness": 12, "consideration": 8, "decision": 0, "retention": 5, "advocacy": 0}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("stages %v, want %v", counts, want)
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	total := 0
	for stage, n := range counts {
		total += n
		want := normalised(t, dbContacts(t, pool, stage))
		out, errOut, err := runWaymark(t, url, "export", "--stage", stage, "--format", "jsonl")
		if err != nil {
			t.Fatalf("export --stage %s: %v\n%s", stage, err, errOut)
		}
		got := parseJSONL(t, out)
		if len(got) != n {
			t.Errorf("export --stage %s: %d contacts, waymark stages says %d", stage, len(got), n)
		}
		if !reflect.DeepEqual(normalised(t, got), want) {
			t.Errorf("export --stage %s (jsonl):\n%v\nwant\n%v", stage, normalised(t, got), want)
		}
		file := filepath.Join(t.TempDir(), stage+".csv")
		if _, errOut, err := runWaymark(t, url, "export", "--stage", stage, "-o", file); err != nil {
			t.Fatalf("export --stage %s -o: %v\n%s", stage, err, errOut)
		} else if !strings.Contains(errOut, fmt.Sprintf("%d contacts written to %s", n, file)) {
			t.Errorf("export -o says %q", errOut)
		}
		b, _ := os.ReadFile(file)
		if got := normalised(t, parseCSV(t, string(b))); !reflect.DeepEqual(got, want) {
			t.Errorf("export --stage %s (csv):\n%v\nwant\n%v", stage, got, want)
		}
	}
	// A segment's members, with their segments (the paying are in
	// both, the vips in big as well).
	out, errOut, err = runWaymark(t, url, "export", "--segment", "paying", "--format", "jsonl")
	if err != nil {
		t.Fatalf("export --segment paying: %v\n%s", err, errOut)
	}
	paying := parseJSONL(t, out)
	big := 0
	for _, c := range paying {
		switch strings.Join(c.Segments, " ") {
		case "big paying":
			big++
		case "paying":
		default:
			t.Errorf("contact %d in paying has segments %v", c.ID, c.Segments)
		}
	}
	if len(paying) != 13 || big != 5 {
		t.Errorf("export --segment paying: %d contacts, %d also in big; want the 8 pro and 5 vip", len(paying), big)
	}
	if out, _, err := runWaymark(t, url, "export", "--segment", "big", "--stage", "awareness"); err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("export --segment big --stage awareness: %v\n%s, want the header alone", err, out)
	}
	all, _, err := runWaymark(t, url, "export")
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCSV(t, all); len(got) != total || !reflect.DeepEqual(normalised(t, got), normalised(t, dbContacts(t, pool, ""))) {
		t.Errorf("export of everyone: %d contacts, want %d with their data", len(got), total)
	}
	if !strings.Contains(all, `"{""name"": ""\""Quoted, with a comma\"", and\na line break — and ünïcode"", ""plan"": ""free"", ""email"": ""user03@example.com""}"`) {
		t.Errorf("the quoted name is not in the CSV as it should be:\n%s", all)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--stage", "lapsed"}, `--stage: "lapsed" is not a stage`},
		{[]string{"export", "--format", "xml"}, `--format: "xml" is not a format (csv or jsonl)`},
		{[]string{"export", "--segment", "vip"}, `--segment: no segment "vip"`},
		{[]string{"export", "--segment", "V I P"}, `--segment: "V I P" is not a segment's name`},
	} {
		if _, _, err := runWaymark(t, url, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// GET /api/v1/contacts/export streams what `waymark export` writes, with
// a management API key.
func TestAPIExportsContacts(t *testing.T) {
	t.Parallel()
	base, pool := startServe(t, exportJourney)
	for i := 0; i < 3; i++ {
		if code := postJSON(t, base, "/v1/identify", fmt.Sprintf(`{"userId":"u%d","traits":{"email":"u%d@example.com","plan":"pro"}}`, i, i)); code != 200 {
			t.Fatalf("identify: %d", code)
		}
	}
	// The reactor moves them to consideration.
	for deadline := time.Now().Add(10 * time.Second); one(t, pool, `SELECT count(*)::text FROM contacts WHERE stage = 'consideration'`) != "3"; {
		if time.Now().After(deadline) {
			t.Fatal("contacts did not move")
		}
		time.Sleep(20 * time.Millisecond)
	}
	key, err := store.New(pool).CreateAPIKey(context.Background(), "export")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, key string) (int, http.Header, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, body := get("/api/v1/contacts/export?stage=consideration&format=jsonl", key)
	if code != 200 || h.Get("Content-Type") != "application/x-ndjson; charset=utf-8" || !strings.HasPrefix(h.Get("Content-Disposition"), `attachment; filename="contacts-consideration-`) {
		t.Fatalf("export: %d %v", code, h)
	}
	if got, want := normalised(t, parseJSONL(t, body)), normalised(t, dbContacts(t, pool, "consideration")); len(got) != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("export:\n%v\nwant\n%v", got, want)
	}
	code, h, body = get("/api/v1/contacts/export?stage=awareness", key)
	if code != 200 || h.Get("Content-Type") != "text/csv; charset=utf-8" || body != strings.Join(export.Header, ",")+"\n" {
		t.Errorf("an empty stage: %d %q %q", code, h.Get("Content-Type"), body)
	}
	for _, tc := range []struct {
		path, key string
		code      int
		want      string
	}{
		{"/api/v1/contacts/export", "", 401, `"field": "Authorization"`},
		{"/api/v1/contacts/export?stage=lapsed", key, 400, `"field": "stage"`},
		{"/api/v1/contacts/export?format=xml", key, 400, `"field": "format"`},
		{"/api/v1/contacts/export?segment=vip", key, 400, `"error": "segment: no segment \"vip\": no such segment",
  "field": "segment"`},
		{"/api/v1/contacts/export?segment=a%22b", key, 400, `"field": "segment"`},
	} {
		if code, _, body := get(tc.path, tc.key); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.path, code, body, tc.code, tc.want)
		}
	}
}
