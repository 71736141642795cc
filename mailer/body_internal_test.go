package mailer

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"testing"
)

// qpStd is what go-mail wrote: the standard library's encoder, in one Write.
func qpStd(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestQuotedPrintableAsStandardLibrary(t *testing.T) {
	t.Parallel()
	cases := []string{
		"",
		"Hello",
		"Hello Zoë, a=b\r\n",
		"trailing space \nand tab\t\r\nend ",
		"\r=\n", // the standard library's CR state survives an encoded byte
		"\r\r\n\n\r",
		strings.Repeat("x", 75) + "\n" + strings.Repeat("y", 76) + "\n" + strings.Repeat("z", 200),
		strings.Repeat("a", 73) + "é" + strings.Repeat("b", 74) + " \n",
		strings.Repeat("é", 60),
		strings.Repeat(" ", 80) + "\n" + strings.Repeat("\t", 80),
		".leading dot\n.another\r\n..two",
		"<a href=\"https://shop.example/c/abc?x=1&y=2\">Shop now</a>\n",
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab =.\t\r\n\x00\xc3\xa9~!")
	for range 2000 {
		n := r.IntN(300)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		if got, want := string(appendQP(nil, s)), qpStd(t, s); got != want {
			t.Fatalf("appendQP(%q)\n = %q\nwant %q", s, got, want)
		}
	}
}

// The content written by writeDotStuffed and writeEnd is what textproto's
// DotWriter writes for content with CRLF line breaks.
func TestDotStuffingAsTextproto(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "a", "a\r\n", ".", ".\r\n", "a\r\n.b\r\n..c\r\n", "a\r\n.", "x\r\n.\r\n.\r\n", "no end\r\n.last",
	} {
		var got, want bytes.Buffer
		gw := bufio.NewWriter(&got)
		writeEnd(gw, writeDotStuffed(gw, []byte(s)))
		if err := gw.Flush(); err != nil {
			t.Fatal(err)
		}
		ww := bufio.NewWriter(&want)
		dw := textproto.NewWriter(ww).DotWriter()
		if _, err := dw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := dw.Close(); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%q: wrote %q, textproto writes %q", s, got.String(), want.String())
		}
	}
}

func TestCRLFOnly(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"": true, "a\r\nb\r\n": true, "a\nb": false, "a\rb": false, "a\r\n\n": false, "\r\r\n": false,
	} {
		if got := crlfOnly([]byte(s)); got != want {
			t.Errorf("crlfOnly(%q) = %v, want %v", s, got, want)
		}
	}
}

// The table appendQP reads agrees with RFC 2045's literal characters for
// every byte.
func TestQPLiteralTable(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		want := c >= '!' && c <= '~' && c != '=' || c == ' ' || c == '\t'
		if qpLiteral(byte(c)) != want {
			t.Errorf("qpLiteral(%#x) = %v, want %v", c, !want, want)
		}
	}
}

// appendQP on an HTML body of a newsletter's size (~10 KB).
// go test -run '^$' -bench AppendQP ./mailer/
func BenchmarkAppendQP(b *testing.B) {
	chunk := `<tr><td class="content" style="padding: 20px; font-family: Helvetica, Arial, sans-serif;">` +
		`<p>Hello Zoë, the trail issue is out: <a href="https://fernwoodsupply.example/blog/packing-list?utm_source=newsletter&amp;c=42">what we pack</a>.</p></td></tr>` + "\n"
	s := strings.Repeat(chunk, 10240/len(chunk)+1)
	buf := make([]byte, 0, 2*len(s))
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		buf = appendQP(buf[:0], s)
	}
}
