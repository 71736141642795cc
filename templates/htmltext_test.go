package templates

import "testing"

func TestHTMLToText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"plain text", "plain text"},
		{"<p>One</p><p>Two</p>", "One\n\nTwo"},
		{"<h1>Title</h1>\n<p>Body   text\n across lines</p>", "Title\n\nBody text across lines"},
		{"a<br>b<br/><br />c", "a\nb\n\nc"},
		{"<div>a</div><div>b</div>", "a\nb"},
		{"<ul><li>one</li><li>two</li></ul>after", "- one\n- two\n\nafter"},
		{"<ol><li>one<ul><li>sub</li></ul></li><li>two</li></ol>", "1. one\n  - sub\n2. two"},
		{`<p>Read <a href="https://example.com/a?x=1&amp;y=2">our blog</a> today.</p>`, "Read our blog (https://example.com/a?x=1&y=2) today."},
		{`<a href="https://example.com">https://example.com</a>`, "https://example.com"},
		{`<a href="https://example.com">example.com</a>`, "example.com"},
		{`<a href="mailto:help@example.com">help@example.com</a> or <a href="mailto:help@example.com?subject=Hi">write</a>`, "help@example.com or write (help@example.com)"},
		{`<a href="#top">Top</a> <a href="javascript:void(0)">x</a>`, "Top x"},
		{`<a href="https://example.com/shop"><img src="b.png" alt="Shop now"></a>`, "Shop now (https://example.com/shop)"},
		{`<a href="https://example.com/shop"><img src="b.png"></a>`, "https://example.com/shop"},
		{`<img src="logo.png" alt="Logo"><p>Hi</p>`, "Hi"},
		{"Fish &amp; chips &lt;3 &eacute;t&eacute; &#8364;5&nbsp;&nbsp;now", "Fish & chips <3 été €5 now"},
		{"<script>alert('<p>x</p>')</script><style>p { color: red }</style>visible", "visible"},
		{"<SCRIPT type=x>a</SCRIPT >b", "b"},
		{"<html><head><title>T</title><meta charset=utf-8></head><body>Body</body></html>", "Body"},
		{"<!-- comment <p>x</p> --><p>y</p><!--[if mso]><p>outlook</p><![endif]-->", "y"},
		{`<div style="display: none; max-height:0">Preheader &zwnj;&nbsp;&zwnj;</div><p>Real</p>`, "Real"},
		{`<div style="display:none"><div>x</div>still hidden</div>shown`, "shown"},
		{"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
		{"<pre>  keep\n    this</pre>next", "keep\n    this\n\nnext"},
		{"1 < 2 and 3 > 2", "1 < 2 and 3 > 2"},
		{"a\u200bb\u00adc", "abc"},
		{"<p>unclosed <b>bold", "unclosed bold"},
		{"<p title='a > b'>quoted</p>", "quoted"},
		{"<!DOCTYPE html><p>x</p>", "x"},
		{"<a href=\"x\">never closed", "never closed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := HTMLToText(tt.in); got != tt.want {
				t.Errorf("HTMLToText(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}
