package mailer_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/waymark/waymark/internal/smtptest"
	"github.com/waymark/waymark/mailer"
)

// dkimKey makes a DKIM key; kind is "rsa-pkcs1", "rsa-pkcs8" or "ed25519".
func dkimKey(t testing.TB, kind string) (*mailer.DKIMConfig, crypto.PublicKey) {
	t.Helper()
	var block *pem.Block
	var pub crypto.PublicKey
	switch kind {
	case "rsa-pkcs1", "rsa-pkcs8":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub = &k.PublicKey
		if kind == "rsa-pkcs1" {
			block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
		} else {
			der, err := x509.MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
	case "ed25519":
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = p
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	return &mailer.DKIMConfig{Domain: "shop.example", Selector: "wm2026", KeyPEM: pem.EncodeToMemory(block)}, pub
}

func dkimConfig(t testing.TB, kind string) *mailer.DKIMConfig {
	cfg, _ := dkimKey(t, kind)
	return cfg
}

func TestDKIM(t *testing.T) {
	t.Parallel()
	python := pythonWithDKIM(t)
	for _, kind := range []string{"rsa-pkcs1", "rsa-pkcs8", "ed25519"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg, pub := dkimKey(t, kind)
			srv := smtptest.Start(t)
			c := dial(t, srv, func(c *mailer.Config) { c.DKIM = cfg })
			m := message("dkim-1", "zoe@customer.example")
			m.Subject = "Grüße   from\tthe shop, with a subject long enough to be folded by the writer " + strings.Repeat("x", 40)
			m.Text = "Hi Zoë,  \r\n.a line starting with a dot\r\n\r\n\ttabbed   text   \r\n\r\n\r\n"
			m.HTML = "<p>Hi Zoë</p>\n<p>" + strings.Repeat("wide ", 40) + "</p>"
			if res := send(t, c, m); res.Outcome != mailer.Sent {
				t.Fatalf("Send = %v", res)
			}
			got := srv.WaitFor(1, 5*time.Second)[0]

			sig := got.Header("DKIM-Signature")
			if len(sig) != 1 {
				t.Fatalf("%d DKIM-Signature fields, want 1\n%s", len(sig), got.Data)
			}
			tags := dkimTags(sig[0])
			wantAlg := "rsa-sha256"
			if kind == "ed25519" {
				wantAlg = "ed25519-sha256"
			}
			for tag, want := range map[string]string{
				"v": "1", "a": wantAlg, "c": "relaxed/relaxed", "d": "shop.example", "s": "wm2026",
				"h": "From:To:Subject:Date:Message-ID:List-Unsubscribe:List-Unsubscribe-Post",
			} {
				if tags[tag] != want {
					t.Errorf("%s= %q, want %q", tag, tags[tag], want)
				}
			}
			if err := verifyDKIM(got.Data, pub); err != nil {
				t.Errorf("independent verifier: %v\n%s", err, got.Data)
			}
			tampered := bytes.Replace(got.Data, []byte("Message-ID: <dkim-1@"), []byte("Message-ID: <dkim-2@"), 1)
			if err := verifyDKIM(tampered, pub); err == nil {
				t.Errorf("independent verifier accepts a changed Message-ID")
			}

			if python == "" {
				return
			}
			if ok, out := dkimpyVerify(t, python, got.Data, pub); !ok {
				t.Errorf("dkimpy does not verify the signature: %s\n%s", out, got.Data)
			}
			if ok, _ := dkimpyVerify(t, python, tampered, pub); ok {
				t.Errorf("dkimpy accepts a changed Message-ID")
			}
		})
	}
}

// pythonWithDKIM finds a python3 with dkimpy (Debian: python3-dkim) and
// PyNaCl for Ed25519. Without it the dkimpy checks are skipped, also on CI:
// the independent Go verifier still runs.
func pythonWithDKIM(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import dkim, nacl").Run() == nil {
			return p
		}
	}
	t.Log("dkimpy not found (apt-get install python3-dkim python3-nacl): checking DKIM with the Go verifier only")
	return ""
}

const dkimpyScript = `
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
rec = open(sys.argv[2], 'rb').read()
def dnsfunc(name, timeout=5):
    if name != b'wm2026._domainkey.shop.example.':
        raise Exception('unexpected DNS query %r' % name)
    return rec
d = dkim.DKIM(msg)
ok = d.verify(dnsfunc=dnsfunc)
print(ok)
sys.exit(0 if ok else 1)
`

func dkimpyVerify(t *testing.T, python string, msg []byte, pub crypto.PublicKey) (bool, string) {
	t.Helper()
	var rec string
	switch k := pub.(type) {
	case ed25519.PublicKey:
		rec = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k)
	default:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		rec = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	}
	dir := t.TempDir()
	msgFile, recFile := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "dns.txt")
	if err := os.WriteFile(msgFile, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recFile, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", dkimpyScript, msgFile, recFile).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running dkimpy: %v", err)
	}
	return err == nil, string(out)
}

// The verifier below is written from RFC 6376 (relaxed/relaxed) and RFC
// 8463, independently of go-mail's signer.

type field struct{ name, raw string } // raw: "Name: value" with folding CRLFs, no final CRLF

func splitMessage(msg []byte) ([]field, []byte, error) {
	head, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		return nil, nil, errors.New("no end of header")
	}
	var fields []field
	for _, line := range strings.Split(string(head), "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if len(fields) == 0 {
				return nil, nil, errors.New("continuation line first")
			}
			fields[len(fields)-1].raw += "\r\n" + line
			continue
		}
		name, _, ok := strings.Cut(line, ":")
		if !ok {
			return nil, nil, fmt.Errorf("header line without colon: %q", line)
		}
		fields = append(fields, field{name: strings.TrimRight(name, " \t"), raw: line})
	}
	return fields, body, nil
}

var wsp = regexp.MustCompile(`[ \t]+`)

func relaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.NewReplacer("\r\n", "").Replace(value)
	value = wsp.ReplaceAllString(value, " ")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + strings.Trim(value, " \t")
}

func relaxedBody(body []byte) []byte {
	lines := strings.Split(string(body), "\r\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(wsp.ReplaceAllString(l, " "), " ")
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) == 0 {
		return nil
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

func dkimTags(value string) map[string]string {
	tags := map[string]string{}
	value = strings.NewReplacer("\r\n", "").Replace(value)
	for _, t := range strings.Split(value, ";") {
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		v = strings.TrimSpace(v)
		if k == "b" || k == "bh" || k == "h" {
			v = strings.Join(strings.Fields(v), "")
		}
		tags[k] = v
	}
	return tags
}

var bTag = regexp.MustCompile(`(^|;)([ \t\r\n]*b[ \t\r\n]*=)[^;]*`)

func verifyDKIM(msg []byte, pub crypto.PublicKey) error {
	fields, body, err := splitMessage(msg)
	if err != nil {
		return err
	}
	var sig *field
	for i := range fields {
		if strings.EqualFold(fields[i].name, "DKIM-Signature") {
			sig = &fields[i]
			break
		}
	}
	if sig == nil {
		return errors.New("no DKIM-Signature")
	}
	_, sigValue, _ := strings.Cut(sig.raw, ":")
	tags := dkimTags(sigValue)
	if tags["c"] != "relaxed/relaxed" {
		return fmt.Errorf("c=%s", tags["c"])
	}

	bh := sha256.Sum256(relaxedBody(body))
	if got := base64.StdEncoding.EncodeToString(bh[:]); got != tags["bh"] {
		return fmt.Errorf("body hash %s, signature says %s", got, tags["bh"])
	}

	var in strings.Builder
	used := map[int]bool{}
	for _, name := range strings.Split(tags["h"], ":") {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].name, name) {
				used[i] = true
				in.WriteString(relaxedHeader(fields[i].raw) + "\r\n")
				break
			}
		}
	}
	name, _, _ := strings.Cut(sig.raw, ":")
	in.WriteString(relaxedHeader(name + ":" + bTag.ReplaceAllString(sigValue, "$1$2")))
	hash := sha256.Sum256([]byte(in.String()))

	b, err := base64.StdEncoding.DecodeString(tags["b"])
	if err != nil {
		return fmt.Errorf("b=: %w", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if tags["a"] != "rsa-sha256" {
			return fmt.Errorf("a=%s for an RSA key", tags["a"])
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, hash[:], b)
	case ed25519.PublicKey:
		if tags["a"] != "ed25519-sha256" {
			return fmt.Errorf("a=%s for an Ed25519 key", tags["a"])
		}
		if !ed25519.Verify(k, hash[:], b) {
			return errors.New("ed25519 signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("key type %T", pub)
}
