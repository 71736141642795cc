package templates

import (
	"bytes"
	"html"
	"strings"
	"unicode/utf8"
)

// HTMLToText turns an email's HTML into its plain-text alternative:
// paragraphs, headings, list items, table rows and <br> become lines
// (paragraphs are separated by a blank line), list items start with "- "
// or their number, a link becomes "text (url)", entities are decoded,
// whitespace is collapsed, and what a reader does not see is dropped:
// <head>, <script>, <style>, comments (so Outlook-only conditional
// content), elements hidden with display:none (preheaders), zero-width
// characters.
func HTMLToText(s string) string {
	c := converter{src: s, out: make([]byte, 0, len(s)/2+16)}
	c.run()
	return string(bytes.TrimSpace(c.out))
}

type converter struct {
	src    string
	out    []byte
	space  bool // a space is due before the next text
	breaks int  // newlines due before the next text (0 to 2)
	links  []textLink
	lists  []textList
	pre    int
	head   bool
	hidden string // element whose content is hidden
	depth  int    // nesting of hidden in itself
}

type textLink struct {
	href  string
	start int
}

type textList struct {
	ordered bool
	n       int
}

type tagAttrs struct {
	href, alt, style string
	hidden           bool
}

func (c *converter) run() {
	s := c.src
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			c.text(s[i:])
			return
		}
		c.text(s[i : i+j])
		i = c.tag(i + j)
	}
}

// tag handles the markup starting at s[i] == '<' and returns where the
// text after it starts.
func (c *converter) tag(i int) int {
	s := c.src
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, "<!--"):
		end := strings.Index(rest[4:], "-->")
		if end < 0 {
			return len(s)
		}
		return i + 4 + end + 3
	case strings.HasPrefix(rest, "<!") || strings.HasPrefix(rest, "<?"):
		return skipPast(s, i, '>')
	case len(rest) > 2 && rest[1] == '/' && isASCIILetter(rest[2]):
		name, j := tagName(s, i+2)
		c.endTag(name)
		return skipPast(s, j, '>')
	case len(rest) > 1 && isASCIILetter(rest[1]):
		name, j := tagName(s, i+1)
		var a tagAttrs
		j, selfClosing := parseAttrs(s, j, &a)
		switch name {
		case "script", "style", "title", "textarea", "xmp", "noembed", "noframes", "iframe", "template":
			return skipRawText(s, j, name)
		}
		c.startTag(name, &a, selfClosing)
		return j
	}
	c.text("<")
	return i + 1
}

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// tagName reads a tag name at s[i:], lower-cased.
func tagName(s string, i int) (string, int) {
	j := i
	for j < len(s) && (isASCIILetter(s[j]) || s[j] >= '0' && s[j] <= '9' || s[j] == '-' || s[j] == ':') {
		j++
	}
	return strings.ToLower(s[i:j]), j
}

func skipPast(s string, i int, b byte) int {
	j := strings.IndexByte(s[i:], b)
	if j < 0 {
		return len(s)
	}
	return i + j + 1
}

// skipRawText skips the content of a raw text element up to its end tag.
func skipRawText(s string, i int, name string) int {
	for {
		j := strings.Index(s[i:], "</")
		if j < 0 {
			return len(s)
		}
		k := i + j + 2
		if len(s)-k >= len(name) && strings.EqualFold(s[k:k+len(name)], name) {
			return skipPast(s, k, '>')
		}
		i = k
	}
}

// parseAttrs reads attributes up to the end of the tag, keeping those the
// converter uses.
func parseAttrs(s string, i int, a *tagAttrs) (next int, selfClosing bool) {
	for i < len(s) {
		switch s[i] {
		case '>':
			return i + 1, selfClosing
		case ' ', '\t', '\n', '\r', '\f':
			i++
			continue
		case '/':
			selfClosing = true
			i++
			continue
		}
		selfClosing = false
		start := i
		for i < len(s) && s[i] != '=' && s[i] != '>' && s[i] != '/' && !isHTMLSpace(s[i]) {
			i++
		}
		name := s[start:i]
		for i < len(s) && isHTMLSpace(s[i]) {
			i++
		}
		var val string
		if i < len(s) && s[i] == '=' {
			i++
			for i < len(s) && isHTMLSpace(s[i]) {
				i++
			}
			if i < len(s) && (s[i] == '"' || s[i] == '\'') {
				q := s[i]
				end := strings.IndexByte(s[i+1:], q)
				if end < 0 {
					return len(s), false
				}
				val = s[i+1 : i+1+end]
				i += end + 2
			} else {
				start := i
				for i < len(s) && s[i] != '>' && !isHTMLSpace(s[i]) {
					i++
				}
				val = s[start:i]
			}
		}
		switch {
		case strings.EqualFold(name, "href"):
			a.href = val
		case strings.EqualFold(name, "alt"):
			a.alt = val
		case strings.EqualFold(name, "style"):
			a.style = val
		case strings.EqualFold(name, "hidden"):
			a.hidden = true
		}
	}
	return len(s), selfClosing
}

func isHTMLSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f'
}

func isVoid(name string) bool {
	switch name {
	case "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr":
		return true
	}
	return false
}

func displayNone(style string) bool {
	if style == "" {
		return false
	}
	var b []byte
	for i := 0; i < len(style); i++ {
		if c := style[i]; !isHTMLSpace(c) {
			b = append(b, c|0x20)
		}
	}
	return bytes.Contains(b, []byte("display:none"))
}

func (c *converter) startTag(name string, a *tagAttrs, selfClosing bool) {
	if c.hidden != "" {
		if name == c.hidden && !selfClosing {
			c.depth++
		}
		return
	}
	if c.head {
		if name == "body" {
			c.head = false
		}
		return
	}
	if name == "head" {
		c.head = true
		return
	}
	if !isVoid(name) && !selfClosing && (name == "svg" || a.hidden || displayNone(a.style)) {
		c.hidden, c.depth = name, 1
		return
	}
	switch name {
	case "br":
		c.breaks = min(c.breaks+1, 2)
	case "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "dl", "hr", "address", "figure":
		c.block(2)
	case "pre":
		c.block(2)
		c.pre++
	case "ul", "ol":
		if len(c.lists) == 0 {
			c.block(2)
		} else {
			c.block(1)
		}
		c.lists = append(c.lists, textList{ordered: name == "ol"})
	case "li":
		c.block(1)
		c.flush()
		if n := len(c.lists); n > 0 {
			for range n - 1 {
				c.out = append(c.out, "  "...)
			}
			l := &c.lists[n-1]
			if l.ordered {
				l.n++
				c.out = appendInt(c.out, l.n)
				c.out = append(c.out, ". "...)
			} else {
				c.out = append(c.out, "- "...)
			}
		} else {
			c.out = append(c.out, "- "...)
		}
	case "div", "tr", "section", "article", "header", "footer", "nav", "aside", "main",
		"caption", "dt", "dd", "form", "fieldset", "figcaption", "details", "summary", "center":
		c.block(1)
	case "td", "th":
		c.space = true
	case "a":
		c.links = append(c.links, textLink{href: a.href, start: len(c.out)})
	case "img":
		if len(c.links) > 0 && a.alt != "" {
			c.text(a.alt)
		}
	}
}

func (c *converter) endTag(name string) {
	if c.hidden != "" {
		if name == c.hidden {
			if c.depth--; c.depth == 0 {
				c.hidden = ""
			}
		}
		return
	}
	if c.head {
		if name == "head" {
			c.head = false
		}
		return
	}
	switch name {
	case "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "dl", "address", "figure":
		c.block(2)
	case "pre":
		c.block(2)
		if c.pre > 0 {
			c.pre--
		}
	case "ul", "ol":
		if n := len(c.lists); n > 0 {
			c.lists = c.lists[:n-1]
		}
		if len(c.lists) == 0 {
			c.block(2)
		} else {
			c.block(1)
		}
	case "li", "div", "tr", "section", "article", "header", "footer", "nav", "aside", "main",
		"caption", "dt", "dd", "form", "fieldset", "figcaption", "details", "summary", "center":
		c.block(1)
	case "td", "th":
		c.space = true
	case "a":
		if n := len(c.links); n > 0 {
			l := c.links[n-1]
			c.links = c.links[:n-1]
			c.endLink(l)
		}
	}
}

func (c *converter) endLink(l textLink) {
	href := strings.TrimSpace(l.href)
	if strings.IndexByte(href, '&') >= 0 {
		href = html.UnescapeString(href)
	}
	lower := strings.ToLower(href)
	if href == "" || href[0] == '#' || strings.HasPrefix(lower, "javascript:") {
		return
	}
	if strings.HasPrefix(lower, "mailto:") {
		href = href[len("mailto:"):]
		if i := strings.IndexByte(href, '?'); i >= 0 {
			href = href[:i]
		}
	}
	text := bytes.TrimSpace(c.out[min(l.start, len(c.out)):])
	if len(text) == 0 {
		c.flush()
		c.out = append(c.out, href...)
		return
	}
	if string(text) == href || string(text) == strings.TrimPrefix(strings.TrimPrefix(href, "https://"), "http://") {
		return
	}
	c.out = append(c.out, " ("...)
	c.out = append(c.out, href...)
	c.out = append(c.out, ')')
}

func (c *converter) block(n int) {
	c.breaks = max(c.breaks, n)
	c.space = false
}

// flush writes the separator due before the next text.
func (c *converter) flush() {
	if c.breaks > 0 {
		if len(c.out) > 0 {
			for range c.breaks {
				c.out = append(c.out, '\n')
			}
		}
		c.breaks, c.space = 0, false
		return
	}
	if c.space {
		if n := len(c.out); n > 0 && c.out[n-1] != '\n' && c.out[n-1] != ' ' {
			c.out = append(c.out, ' ')
		}
		c.space = false
	}
}

func (c *converter) text(t string) {
	if c.hidden != "" || c.head || t == "" {
		return
	}
	if strings.IndexByte(t, '&') >= 0 {
		t = html.UnescapeString(t)
	}
	if c.pre > 0 {
		c.flush()
		for i := 0; i < len(t); i++ {
			if t[i] != '\r' {
				c.out = append(c.out, t[i])
			}
		}
		return
	}
	for i := 0; i < len(t); {
		b := t[i]
		if b < utf8.RuneSelf {
			i++
			if isHTMLSpace(b) || b == '\v' {
				c.space = true
				continue
			}
			if b < 0x20 || b == 0x7f {
				continue
			}
			if c.space || c.breaks > 0 {
				c.flush()
			}
			c.out = append(c.out, b)
			continue
		}
		r, size := utf8.DecodeRuneInString(t[i:])
		switch r {
		case 0xa0, 0x2002, 0x2003, 0x2009, 0x3000, 0x2028, 0x2029, 0x85:
			c.space = true
		case 0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x34f, 0xad, utf8.RuneError:
		default:
			if c.space || c.breaks > 0 {
				c.flush()
			}
			c.out = append(c.out, t[i:i+size]...)
		}
		i += size
	}
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
