// Package templates compiles and renders Waymark's email templates.
//
// A template has a subject, a text body and optionally an HTML body, plus
// per-tone variants that override any of them. Subjects and text bodies
// are text/template templates, HTML bodies html/template ones, so values
// are escaped for the context they land in. Compile checks every variant
// statically against the data a template sees (a misspelt field is an
// error even in a branch the sample contact does not take), then renders
// it against a sample contact; Render is safe for concurrent use and
// bounded in time and output whatever the template says.
//
// The package is pure: no helper reads files, the network, the
// environment or the process. (dateIn reads the time zone database
// through time.LoadLocation, and caches the zones it loaded.)
package templates

import (
	"errors"
	htmltemplate "html/template"
	"io"
	"slices"
	"strings"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// Content is one variant of an email as the marketer wrote it.
type Content struct {
	Subject, Text, HTML string
}

// Template is an email: the base content, which is the default tone, and
// per-tone variants. A tone variant overrides only the non-blank parts of
// Base. When the HTML is empty the email is text only; when the text is
// empty it is derived from the rendered HTML.
type Template struct {
	Name  string
	Base  Content
	Tones map[string]Content
}

// Offer is the reward a sequence step gives, if any.
type Offer struct {
	Name, Code string
	ExpiresAt  time.Time
}

// Contact is the person an email is rendered for.
type Contact struct {
	Email  string
	Traits map[string]any
	Stage  string
	// FirstName is derived from Traits by Render when empty; see
	// FirstName.
	FirstName string
}

// Data is what a template sees: {{.Contact.FirstName}}, {{.Offer.Code}},
// {{.UnsubscribeURL}}... Offer is nil when the step gives none.
type Data struct {
	Contact        Contact
	Tone           string
	Offer          *Offer
	UnsubscribeURL string
	PreferencesURL string
}

// execData is the value templates execute on: the fields of Data, plus
// the render's loop budget, which templates cannot reach.
type execData struct {
	Contact        Contact
	Tone           string
	Offer          *Offer
	UnsubscribeURL string
	PreferencesURL string

	work int // see maxWork
}

// Rendered is a rendered email. HTML is empty for a text-only email;
// Subject is safe to use as a header (see SanitizeHeader).
type Rendered struct {
	Subject, Text, HTML string
}

// Compiled is a checked, parsed template, ready to render many times from
// many goroutines.
type Compiled struct {
	name  string
	base  *variant
	tones map[string]*variant
	names []string
	pool  sync.Pool // *renderState
}

// variant is the effective content of one tone: its own parts where it
// has them, the base's otherwise.
type variant struct {
	subject, text, html *part // text nil: derived from html
}

// part is one compiled subject, text or HTML body.
type part struct {
	w      where
	static bool   // no actions: literal is the output
	lit    string // for static parts (subject: already sanitised)
	text   *texttemplate.Template
	html   *htmltemplate.Template
}

// Compile checks a template and prepares it for rendering. It refuses,
// with an *Error naming the variant, part, line and column: a part that
// does not parse, an unknown field or function (in every branch), a range
// over anything but a list or a map, a base without subject or text, a
// part over 256 KB, and any variant that fails to render for a sample
// contact.
func Compile(t Template) (*Compiled, error) {
	if strings.TrimSpace(t.Name) == "" {
		return nil, &Error{Template: t.Name, Msg: "missing name"}
	}
	h := &helpers{}
	fm := h.funcMap()
	cc := compiler{name: t.Name, funcs: fm, sigs: userFuncs(fm)}

	if blank(t.Base.Subject) {
		return nil, &Error{Template: t.Name, Variant: BaseVariant, Part: PartSubject, Msg: "missing subject"}
	}
	if blank(t.Base.Text) && blank(t.Base.HTML) {
		return nil, &Error{Template: t.Name, Variant: BaseVariant, Part: PartText, Msg: "missing text: write a text body, or an HTML body to derive it from"}
	}
	base, err := cc.variant(BaseVariant, t.Base, &variant{})
	if err != nil {
		return nil, err
	}
	c := &Compiled{name: t.Name, base: base, tones: make(map[string]*variant, len(t.Tones))}
	for tone := range t.Tones {
		c.names = append(c.names, tone)
	}
	slices.Sort(c.names)
	for _, tone := range c.names {
		if blank(tone) || tone != strings.TrimSpace(tone) {
			return nil, &Error{Template: t.Name, Variant: tone, Msg: "a tone needs a name without surrounding spaces"}
		}
		if tone == BaseVariant {
			return nil, &Error{Template: t.Name, Variant: tone, Msg: `tone name "default" is reserved for the base content`}
		}
		v, err := cc.variant(tone, t.Tones[tone], base)
		if err != nil {
			return nil, err
		}
		c.tones[tone] = v
	}
	c.pool.New = func() any { return new(renderState) }

	// Render every variant once for a sample contact: this catches what a
	// static check cannot (a helper refusing its argument, a comparison of
	// mismatched types, an output too large).
	var r Rendered
	if err := c.renderVariant(&r, base, "", sampleData()); err != nil {
		return nil, err
	}
	for _, tone := range c.names {
		if err := c.renderVariant(&r, c.tones[tone], tone, sampleData()); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }

// sampleData is the contact every variant is rendered for when saved.
func sampleData() *Data {
	return &Data{
		Contact: Contact{
			Email:  "alex.sample@example.com",
			Stage:  "consideration",
			Traits: map[string]any{"first_name": "Alex", "name": "Alex Sample", "email": "alex.sample@example.com"},
		},
		Offer: &Offer{
			Name:      "Thank you",
			Code:      "THANKS-7Q2X",
			ExpiresAt: time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC),
		},
		UnsubscribeURL: "https://example.com/u/sample-token",
		PreferencesURL: "https://example.com/p/sample-token",
	}
}

type compiler struct {
	name  string
	funcs map[string]any
	sigs  map[string]funcSig
}

// variant compiles the non-blank parts of c and takes the others from
// base.
func (cc *compiler) variant(tone string, c Content, base *variant) (*variant, error) {
	v := *base
	var err error
	if !blank(c.Subject) {
		if v.subject, err = cc.part(tone, PartSubject, c.Subject); err != nil {
			return nil, err
		}
	}
	if !blank(c.Text) {
		if v.text, err = cc.part(tone, PartText, c.Text); err != nil {
			return nil, err
		}
	}
	if !blank(c.HTML) {
		if v.html, err = cc.part(tone, PartHTML, c.HTML); err != nil {
			return nil, err
		}
	}
	return &v, nil
}

func (cc *compiler) part(tone, name, src string) (*part, error) {
	p := &part{w: where{template: cc.name, variant: tone, part: name, src: src}}
	if len(src) > maxSourceSize {
		return nil, p.w.errorf(0, 0, "longer than 256 KB")
	}
	tree := parse.New(name)
	tree.Mode = parse.SkipFuncCheck
	set := map[string]*parse.Tree{}
	if _, err := tree.Parse(src, "", "", set); err != nil {
		return nil, p.w.parseError(err)
	}
	if len(set) > 1 {
		pos := 0
		if loc := defineRE.FindStringIndex(src); loc != nil {
			pos = loc[0]
		}
		return nil, p.w.at(pos, "{{define}} and {{block}} are not supported")
	}
	ck := checker{w: &p.w, funcs: cc.sigs, html: name == PartHTML}
	if err := ck.check(tree); err != nil {
		return nil, err
	}
	if lit, ok := literal(tree); ok {
		p.static, p.lit = true, lit
		if name == PartSubject {
			p.lit = SanitizeHeader(lit)
		}
		return p, nil
	}
	var err error
	if name == PartHTML {
		p.html, err = htmltemplate.New(name).Funcs(cc.funcs).AddParseTree(name, tree)
	} else {
		p.text, err = texttemplate.New(name).Funcs(cc.funcs).AddParseTree(name, tree)
	}
	if err != nil {
		return nil, p.w.errorf(0, 0, err.Error())
	}
	return p, nil
}

// literal returns the text of a tree without actions.
func literal(t *parse.Tree) (string, bool) {
	var b strings.Builder
	for _, n := range t.Root.Nodes {
		tn, ok := n.(*parse.TextNode)
		if !ok {
			return "", false
		}
		b.Write(tn.Text)
	}
	return b.String(), true
}

// Name returns the template's name.
func (c *Compiled) Name() string { return c.name }

// Tones returns the tones that have a variant, sorted.
func (c *Compiled) Tones() []string { return slices.Clone(c.names) }

// Render renders the variant for tone (the base when the template has no
// such variant) for d. The template sees d with Tone set to tone and, when
// d.Contact.FirstName is empty, the first name derived from the traits; d
// itself is not modified. Errors are *Error.
func (c *Compiled) Render(tone string, d *Data) (Rendered, error) {
	var r Rendered
	err := c.RenderTo(&r, tone, d)
	return r, err
}

// RenderTo is Render writing into dst, for the send path: it reuses
// buffers between calls and allocates little more than the three strings.
// On error dst is zeroed.
func (c *Compiled) RenderTo(dst *Rendered, tone string, d *Data) error {
	v := c.tones[tone]
	if v == nil {
		v = c.base
	}
	return c.renderVariant(dst, v, tone, d)
}

// renderState is what one render needs, pooled.
type renderState struct {
	data execData
	out  limitedBuffer
}

func (c *Compiled) renderVariant(dst *Rendered, v *variant, tone string, d *Data) error {
	st := c.pool.Get().(*renderState)
	if d != nil {
		st.data = execData{
			Contact:        d.Contact,
			Offer:          d.Offer,
			UnsubscribeURL: d.UnsubscribeURL,
			PreferencesURL: d.PreferencesURL,
		}
	} else {
		st.data = execData{}
	}
	st.data.Tone = tone
	if st.data.Contact.FirstName == "" {
		st.data.Contact.FirstName = FirstName(st.data.Contact.Traits)
	}
	err := c.render(dst, v, st)
	st.data = execData{}
	if cap(st.out.b) > 64<<10 {
		st.out.b = nil
	}
	c.pool.Put(st)
	if err != nil {
		*dst = Rendered{}
	}
	return err
}

func (c *Compiled) render(dst *Rendered, v *variant, st *renderState) error {
	if v.subject.static {
		dst.Subject = v.subject.lit
	} else {
		if err := v.subject.exec(st); err != nil {
			return err
		}
		dst.Subject = sanitizeHeaderBytes(st.out.b)
	}
	if v.text != nil {
		s, err := v.text.string(st)
		if err != nil {
			return err
		}
		dst.Text = s
	}
	dst.HTML = ""
	if v.html != nil {
		s, err := v.html.string(st)
		if err != nil {
			return err
		}
		dst.HTML = s
		if v.text == nil {
			dst.Text = HTMLToText(s)
		}
	}
	return nil
}

func (p *part) string(st *renderState) (string, error) {
	if p.static {
		return p.lit, nil
	}
	if err := p.exec(st); err != nil {
		return "", err
	}
	return string(st.out.b), nil
}

func (p *part) exec(st *renderState) error {
	st.out.b = st.out.b[:0]
	var err error
	if p.html != nil {
		err = p.html.Execute(&st.out, &st.data)
	} else {
		err = p.text.Execute(&st.out, &st.data)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, errOutputTooLarge) {
		return p.w.errorf(0, 0, err.Error())
	}
	return p.w.execError(err)
}

func sanitizeHeaderBytes(b []byte) string {
	if cleanHeader(b) {
		return string(b)
	}
	return SanitizeHeader(string(b))
}

// limitedBuffer is an io.Writer that refuses to grow past maxOutputSize.
type limitedBuffer struct {
	b []byte
}

var _ io.Writer = (*limitedBuffer)(nil)

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b)+len(p) > maxOutputSize {
		return 0, errOutputTooLarge
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *limitedBuffer) WriteString(s string) (int, error) {
	if len(l.b)+len(s) > maxOutputSize {
		return 0, errOutputTooLarge
	}
	l.b = append(l.b, s...)
	return len(s), nil
}
