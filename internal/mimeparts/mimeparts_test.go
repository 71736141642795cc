package mimeparts

import (
	"fmt"
	"net/textproto"
	"strings"
	"testing"
)

func header(ct, cte string) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	if cte != "" {
		h.Set("Content-Transfer-Encoding", cte)
	}
	return h
}

func TestWalkDecodesEveryLeafInOrder(t *testing.T) {
	body := "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9\r\n" +
		"--b\r\nContent-Type: multipart/related; boundary=c\r\n\r\n" +
		"--c\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8\r\nL2I+\r\n--c--\r\n" +
		"--b--\r\n"
	var got []string
	err := Walk(header("multipart/alternative; boundary=b", ""), strings.NewReader(body), func(l Leaf) error {
		b, err := Decode(l)
		got = append(got, l.Media+"="+string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "text/plain=Café|text/html=<b>hi</b>"; strings.Join(got, "|") != want {
		t.Fatalf("leaves %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestWalkRefusesMalformedMIME(t *testing.T) {
	var deep strings.Builder
	for i := range MaxDepth + 2 {
		fmt.Fprintf(&deep, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i, i+1)
	}
	for name, c := range map[string]struct{ ct, body, want string }{
		"no boundary": {"multipart/mixed", "x", "without boundary"},
		"no parts":    {"multipart/mixed; boundary=b", "--b--\r\n", "with no parts"},
		"bad type":    {"text/plain; charset", "x", "Content-Type"},
		"too deep":    {"multipart/mixed; boundary=b0", deep.String(), "nested deeper"},
	} {
		err := Walk(header(c.ct, ""), strings.NewReader(c.body), func(Leaf) error { return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", name, err, c.want)
		}
	}
	_, err := Decode(Leaf{Media: "text/plain", Header: header("text/plain", "uuencode"), Body: strings.NewReader("x")})
	if err == nil || !strings.Contains(err.Error(), `unknown Content-Transfer-Encoding "uuencode"`) {
		t.Errorf("Decode: err = %v", err)
	}
}
