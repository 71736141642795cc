package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/waymark/waymark/internal/pgtest"
	"github.com/waymark/waymark/internal/smtptest"
)

func TestEraseAndExport(t *testing.T) {
	t.Parallel()
	url := pgtest.Clone(t)
	smtp := smtptest.Start(t)
	env := map[string]string{"DATABASE_URL": url, "WAYMARK_SMTP_URL": fmt.Sprintf("smtp://%s?tls=none", smtp.Addr()), "WAYMARK_FROM": "shop@shop.example"}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "c.csv"), []byte("userId,email,first_name\nann,Ann@Example.com,Ann\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "e.csv"), []byte("userId,event,timestamp,revenue\nann,order_completed,2026-01-02T10:00:00Z,12\n"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "j.yaml"), []byte("sequences:\n  - name: welcome\n    trigger: {enter_stage: awareness}\n    steps:\n      - {after: 0h, template: hi}\nsending:\n  quiet_hours: {from: '00:00', to: '00:00'}\ntemplates:\n  - {name: hi, subject: Hi, text: Hello}\n"), 0o644)
	for _, args := range [][]string{{"import", filepath.Join(dir, "c.csv")}, {"import", filepath.Join(dir, "e.csv")}, {"apply", "-f", filepath.Join(dir, "j.yaml")}, {"tick"}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
	}
	if smtp.Count() != 1 {
		t.Fatalf("%d messages before erasure", smtp.Count())
	}
	out, _, err := runWith(t, env, "contacts", "export", "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Contact struct {
			Email string `json:"email"`
		} `json:"contact"`
		Events []map[string]any `json:"events"`
		Emails []map[string]any `json:"emails"`
	}
	if err := json.Unmarshal([]byte(out), &exp); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, out)
	}
	if exp.Contact.Email != "ann@example.com" || len(exp.Events) != 2 || len(exp.Emails) != 1 || exp.Emails[0]["status"] != "sent" {
		t.Fatalf("export: %+v", exp)
	}
	out, _, err = runWith(t, env, "contacts", "erase", "ann")
	if err != nil || !strings.Contains(out, "erased") {
		t.Fatalf("erase: %q %v", out, err)
	}
	if _, _, err := runWith(t, env, "contacts", "export", "ann"); err == nil {
		t.Fatal("the erased contact can still be exported")
	}
	// Imported again: the address is recognised by its hash and never
	// mailed.
	for _, args := range [][]string{{"import", filepath.Join(dir, "c.csv")}, {"tick"}} {
		if _, errOut, err := runWith(t, env, args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut)
		}
	}
	if smtp.Count() != 1 {
		t.Fatalf("the erased address was mailed again: %d messages", smtp.Count())
	}
	out, _, _ = runWith(t, env, "contacts", "export", "ann")
	if !strings.Contains(out, `"suppressed"`) || !strings.Contains(out, "suppressed: erased") {
		t.Fatalf("the re-imported contact's welcome should be suppressed as erased:\n%s", out)
	}
}
