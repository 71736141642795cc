package ingest_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// Issue 23: a number no float8 can hold (1e400, 400 nines) was stored, and
// every sum() over it then failed for everyone. Such numbers are refused at
// ingestion, naming the entry and the field; the rest of a batch is stored.
func TestHostileNumbersRefusedAtIngestion(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	nines := strings.Repeat("9", 400)
	for _, c := range []struct{ name, body, field string }{
		{"1e400", `{"userId":"u","event":"order_completed","properties":{"revenue":1e400}}`, "properties.revenue"},
		{"400 nines", `{"userId":"u","event":"order_completed","properties":{"revenue":` + nines + `}}`, "properties.revenue"},
		{"negative overflow", `{"userId":"u","event":"order_completed","properties":{"items":[{"price":1},{"price":-1.8e308}]}}`, "properties.items[1].price"},
		{"underflow to zero", `{"userId":"u","event":"order_completed","properties":{"revenue":1e-400}}`, "properties.revenue"},
		{"in traits", `{"userId":"u","traits":{"ltv":1e309}}`, "traits.ltv"},
		{"in context", `{"userId":"u","event":"x","context":{"n":2e-324}}`, "context.n"},
	} {
		path := "/v1/track"
		if strings.Contains(c.body, "traits") {
			path = "/v1/identify"
		}
		r := post(t, srv, path, writeKey, []byte(c.body))
		if f, _ := r.body["field"].(string); r.status != 400 || f != c.field || !strings.Contains(r.body["error"].(string), "out of range") {
			t.Errorf("%s: %d %v, want 400 naming %s", c.name, r.status, r.body, c.field)
		}
	}
	// A batch keeps its good entries.
	body := `{"batch":[{"type":"track","userId":"u","event":"order_completed","properties":{"revenue":20}},` +
		`{"type":"track","userId":"u","event":"order_completed","properties":{"revenue":` + nines + `}},` +
		`{"type":"track","userId":"u","event":"order_completed","properties":{"revenue":1.7976931348623157e308,"tiny":5e-324}}]}`
	r := post(t, srv, "/v1/batch", writeKey, []byte(body))
	rej, _ := r.body["rejected"].([]any)
	if r.status != 400 || r.body["accepted"] != float64(2) || len(rej) != 1 || rej[0].(map[string]any)["field"] != "batch[1].properties.revenue" {
		t.Fatalf("batch: %d %v, want 400 with batch[1].properties.revenue rejected and 2 accepted", r.status, r.body)
	}
	// What was stored can be summed as float8 by PostgreSQL.
	var sum float64
	if err := pool.QueryRow(context.Background(), `SELECT sum((properties->'revenue')::float8) FROM events`).Scan(&sum); err != nil {
		t.Fatalf("summing what was stored: %v", err)
	}
	if n := events(t, pool); n != 2 {
		t.Fatalf("%d events stored, want the 2 good ones", n)
	}
}

// Issue 23, item 5: addresses holding a control, format or separator
// character (U+2028, U+2029, U+0085, U+202E, U+200B) were stored, then sent
// raw in RCPT TO and To:. Refused with a 400 naming traits.email.
func TestInvisibleCharactersInEmailRefused(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	for _, e := range []string{`zoe\u2028@customer.example`, `zoe@customer.example\u2029`, `zoe@customer\u0085.example`, `\u202ezoe@customer.example`, `zo\u200be@customer.example`} {
		r := post(t, srv, "/v1/identify", writeKey, []byte(`{"userId":"z","traits":{"email":"`+e+`"}}`))
		if f, _ := r.body["field"].(string); r.status != 400 || f != "traits.email" {
			t.Errorf("%s: %d %v, want 400 naming traits.email", e, r.status, r.body)
		}
	}
	if n := events(t, pool); n != 0 {
		t.Fatalf("%d events stored", n)
	}
}

// Issue 23, item 4: 200 identifies of 30 KB each gave a contact 6 MB of
// traits. An identify that would take a contact's traits over 64 KB or
// 256 keys is refused with a 400 naming traits, and what is stored stays;
// the contact's other calls go on.
func TestTraitsAreCapped(t *testing.T) {
	t.Parallel()
	srv, pool := newServer(t)
	ctx := context.Background()
	big := strings.Repeat("x", 30<<10)
	traits := func() (size, keys int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT octet_length(traits::text), (SELECT count(*) FROM jsonb_object_keys(traits))
			FROM contacts WHERE user_id = 'big'`).Scan(&size, &keys); err != nil {
			t.Fatal(err)
		}
		return
	}
	for i := range 2 {
		if r := post(t, srv, "/v1/identify", writeKey, []byte(`{"userId":"big","messageId":"i`+itoa(i)+`","traits":{"k`+itoa(i)+`":"`+big+`"}}`)); r.status != 200 {
			t.Fatalf("identify %d: %d %v", i, r.status, r.body)
		}
	}
	size, keys := traits()
	r := post(t, srv, "/v1/identify", writeKey, []byte(`{"userId":"big","messageId":"i2","traits":{"k2":"`+big+`"}}`))
	if r.status != 400 || r.body["field"] != "traits" {
		t.Fatalf("a third 30 KB trait: %d %v, want 400 naming traits", r.status, r.body)
	}
	if s, k := traits(); s != size || k != keys || k != 2 {
		t.Fatalf("traits after the refusal: %d bytes, %d keys; want them as they were (%d bytes, 2 keys)", s, k, size)
	}
	// In a batch: the identify is rejected alone.
	body := `{"batch":[{"type":"track","userId":"big","event":"page_viewed","messageId":"t1"},` +
		`{"type":"identify","userId":"big","messageId":"i3","traits":{"k3":"` + big + `"}},` +
		`{"type":"identify","userId":"small","messageId":"i4","traits":{"plan":"pro"}}]}`
	r = post(t, srv, "/v1/batch", writeKey, []byte(body))
	rej, _ := r.body["rejected"].([]any)
	if r.status != 400 || r.body["accepted"] != float64(2) || len(rej) != 1 || rej[0].(map[string]any)["field"] != "batch[1].traits" {
		t.Fatalf("batch: %d %v, want batch[1].traits rejected and 2 accepted", r.status, r.body)
	}
	var stored []string
	rows, _ := pool.Query(ctx, `SELECT message_id FROM events ORDER BY message_id`)
	for rows.Next() {
		var m string
		_ = rows.Scan(&m)
		stored = append(stored, m)
	}
	if got := strings.Join(stored, " "); got != "i0 i1 i4 t1" {
		t.Fatalf("events stored: %s, want i0 i1 i4 t1 (nothing of the refused identifies)", got)
	}
	// Too many keys in one call: refused before storing.
	var many strings.Builder
	many.WriteString(`{"userId":"keys","traits":{`)
	for i := range 300 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`"k` + itoa(i) + `":1`)
	}
	many.WriteString("}}")
	if r := post(t, srv, "/v1/identify", writeKey, []byte(many.String())); r.status != 400 || r.body["field"] != "traits" {
		t.Fatalf("300 keys: %d %v, want 400 naming traits", r.status, r.body)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
