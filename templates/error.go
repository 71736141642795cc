package templates

import (
	"errors"
	htmltemplate "html/template"
	"regexp"
	"strconv"
	"strings"
	"text/template/parse"
	"unicode/utf8"
)

// Part names used in errors.
const (
	PartSubject = "subject"
	PartText    = "text"
	PartHTML    = "html"
)

// BaseVariant is the variant name errors use for a template's base
// content, the default tone.
const BaseVariant = "default"

// Error is a template that cannot be saved or rendered: which template,
// which variant (a tone, or "default" for the base), which part (subject,
// text or html), where in that part (line and column from 1; 0 when the
// problem has no position, like a missing part) and what is wrong.
type Error struct {
	Template string
	Variant  string
	Part     string
	Line     int
	Column   int
	Msg      string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("template ")
	b.WriteString(strconv.Quote(e.Template))
	if e.Variant != "" {
		b.WriteString(", tone ")
		b.WriteString(strconv.Quote(e.Variant))
	}
	if e.Part != "" {
		b.WriteString(", ")
		b.WriteString(e.Part)
	}
	if e.Line > 0 {
		b.WriteString(", line ")
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(", column ")
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// where identifies a part of a variant of a template, and holds its
// source to turn byte offsets into lines and columns.
type where struct {
	template, variant, part string
	src                     string
}

func (w *where) errorf(line, col int, msg string) *Error {
	return &Error{Template: w.template, Variant: w.variant, Part: w.part, Line: line, Column: col, Msg: msg}
}

// at returns an error positioned at byte offset pos of the source.
func (w *where) at(pos int, msg string) *Error {
	line, col := lineCol(w.src, pos)
	return w.errorf(line, col, msg)
}

// lineCol turns a byte offset into a line and a column, both from 1; the
// column counts characters (runes), not bytes.
func lineCol(src string, pos int) (line, col int) {
	if pos < 0 {
		pos = 0
	}
	if pos > len(src) {
		pos = len(src)
	}
	before := src[:pos]
	line = 1 + strings.Count(before, "\n")
	start := strings.LastIndexByte(before, '\n') + 1
	return line, 1 + utf8.RuneCountInString(before[start:])
}

// lineStart returns the byte offset where line n (from 1) starts, or -1.
func lineStart(src string, n int) int {
	off := 0
	for i := 1; i < n; i++ {
		j := strings.IndexByte(src[off:], '\n')
		if j < 0 {
			return -1
		}
		off += j + 1
	}
	return off
}

func lineText(src string, n int) (text string, off int) {
	off = lineStart(src, n)
	if off < 0 {
		return "", -1
	}
	text = src[off:]
	if j := strings.IndexByte(text, '\n'); j >= 0 {
		text = text[:j]
	}
	return text, off
}

// nodeStart returns the offset where a node's text starts. The parser
// positions a field chain such as .Contact.Email at its second element.
func nodeStart(n parse.Node) int {
	pos := int(n.Position())
	switch n := n.(type) {
	case *parse.FieldNode:
		if len(n.Ident) > 1 {
			pos -= 1 + len(n.Ident[0])
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 {
			pos -= len(n.Ident[0])
		}
	}
	return pos
}

var (
	// template: NAME:LINE: MSG
	parseErrRE = regexp.MustCompile(`(?s)^template: [^:]*:(\d+): (.*)$`)
	// template: NAME:LINE:COL: executing "NAME" at <CTX>: MSG
	execErrRE = regexp.MustCompile(`(?s)^template: [^:]*:(\d+):(\d+): executing "[^"]*" at <(.*?)>: (.*)$`)
	quotedRE  = regexp.MustCompile(`"((?:[^"\\]|\\.)+)"|<([^<>]+)>|'([^']+)'`)
	defineRE  = regexp.MustCompile(`\{\{-?\s*(define|block)\b`)
)

// parseError converts an error of text/template/parse. The parser reports
// only a line; the column is that of the token the message quotes when it
// can be found on that line inside an action, else of the line's first
// action.
func (w *where) parseError(err error) *Error {
	m := parseErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return w.errorf(0, 0, err.Error())
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	text, off := lineText(w.src, line)
	if off < 0 {
		return w.errorf(line, 0, msg)
	}
	col := -1
	if strings.Contains(msg, "unexpected EOF") {
		_, c := lineCol(w.src, len(w.src))
		if l, _ := lineCol(w.src, len(w.src)); l == line {
			return w.errorf(line, c, msg)
		}
	}
	first := strings.Index(text, "{{")
	if q := quotedRE.FindStringSubmatch(msg); q != nil && first >= 0 {
		tok := q[1]
		if tok == "" {
			tok = q[2] + q[3]
		} else if u, err := strconv.Unquote(`"` + tok + `"`); err == nil {
			tok = u
		}
		if tok != "" {
			if i := strings.Index(text[first:], tok); i >= 0 {
				col = first + i
			}
		}
	}
	if col < 0 && first >= 0 {
		col = first
		if strings.Contains(msg, "unclosed") || strings.Contains(msg, "unterminated") {
			// The first action on the line that does not close on it.
			for i := first; i >= 0; {
				if !strings.Contains(text[i+2:], "}}") {
					col = i
					break
				}
				next := strings.Index(text[i+2:], "{{")
				if next < 0 {
					break
				}
				i += 2 + next
			}
		}
	}
	if col < 0 {
		col = 0
	}
	_, c := lineCol(w.src, off+col)
	return w.errorf(line, c, msg)
}

// execError converts an error returned while executing a template.
func (w *where) execError(err error) *Error {
	var he *htmltemplate.Error
	if errors.As(err, &he) {
		msg := he.Description
		if he.ErrorCode == htmltemplate.ErrEndContext {
			// The description dumps the escaper's state; say it plainly.
			return w.at(len(w.src), "the HTML ends inside a tag, an attribute, a comment or a script")
		}
		if he.Node != nil {
			return w.at(nodeStart(he.Node), msg)
		}
		return w.errorf(he.Line, 0, msg)
	}
	m := execErrRE.FindStringSubmatch(err.Error())
	if m == nil {
		return w.errorf(0, 0, strings.TrimPrefix(err.Error(), "template: "))
	}
	line, _ := strconv.Atoi(m[1])
	byteCol, _ := strconv.Atoi(m[2])
	msg := m[4]
	if rest, ok := strings.CutPrefix(msg, "error calling "); ok {
		msg = rest
		// The functions the compiler inserts are no business of the
		// marketer's.
		for _, fn := range [...]string{fnStep, fnFinite, fnStr} {
			if rest, ok := strings.CutPrefix(msg, fn+": "); ok {
				msg = rest
			}
		}
	}
	off := lineStart(w.src, line)
	if off < 0 {
		return w.errorf(line, 0, msg)
	}
	_, col := lineCol(w.src, off+byteCol)
	return w.errorf(line, col, msg)
}
