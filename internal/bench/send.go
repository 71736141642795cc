package bench

// The send benchmark's pieces: a journey whose welcome email is due for
// every contact at once (a short text email, or a newsletter the size of
// listmonk's default template), contacts loaded with COPY, Postfix's
// smtp-sink as the receiving server, and the two baselines the sender is
// measured against in the same run: Postfix's smtp-source sending the same
// number of messages of the same size, and a bare go-mail loop (persistent
// clients, prebuilt messages, no database, no rendering).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	gomail "github.com/wneessen/go-mail"
)

// SendBodies are the email bodies the send benchmark knows.
var SendBodies = []string{"short", "newsletter"}

// SendTemplateName is the name of the benchmark's one template.
const SendTemplateName = "welcome"

// SendJourney returns the benchmark's journey: a welcome sequence of one
// 0-delay step for everyone in awareness, a formal tone for business
// contacts (traits.company) and a friendly default, no frequency cap and
// no quiet hours, and the welcome template with the given body (short or
// newsletter).
func SendJourney(body string) (string, error) {
	var subject, text, html, formalText string
	switch body {
	case "short":
		subject = `Welcome to Fernwood, {{.Contact.FirstName | title | default "there"}}`
		text = shortText
		formalText = shortFormalText
	case "newsletter":
		subject = `Fernwood Notes: the trail issue, {{.Contact.FirstName | title | default "friend"}}`
		text = newsletterText
		html = newsletterHTML
		formalText = newsletterFormalText
	default:
		return "", fmt.Errorf("body %q: want short or newsletter", body)
	}
	var b strings.Builder
	b.WriteString(`rules:
  - name: engaged-visitor
    from: [awareness]
    to: consideration
    when: count("page_viewed", "14d") >= 3
tones:
  - tone: formal
    when: traits.company != nil && traits.company != ""
  - tone: friendly
sequences:
  - name: welcome
    trigger: {enter_stage: awareness}
    steps:
      - {after: 0h, template: ` + SendTemplateName + `}
sending:
  frequency_cap: {max: 0, per: 7d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: ` + SendTemplateName + `
    subject: ` + strconv.Quote(subject) + `
`)
	block(&b, "    ", "text", text)
	if html != "" {
		block(&b, "    ", "html", html)
	}
	b.WriteString("    tones:\n      formal:\n        subject: \"Welcome to Fernwood Supply{{with trait \\\"company\\\"}}, {{.}}{{end}}\"\n")
	block(&b, "        ", "text", formalText)
	if html != "" {
		// The newsletter's HTML is the same in both tones (as it was
		// measured): the journey says so, or apply refuses the pairing.
		b.WriteString("        inherit: [html]\n")
	}
	return b.String(), nil
}

// block writes a YAML literal block scalar.
func block(b *strings.Builder, indent, key, s string) {
	b.WriteString(indent + key + ": |\n")
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString(indent + "  " + line + "\n")
	}
}

const shortText = `Hi {{.Contact.FirstName | title | default "there"}},

Welcome to Fernwood Supply. Start with our best-sellers:
https://fernwoodsupply.example/best-sellers

Shipping is free on orders over {{money 75 "USD"}}.

Maya and the Fernwood crew
--
Unsubscribe: {{.UnsubscribeURL}}
`

const shortFormalText = `Hello {{.Contact.FirstName | title | default "there"}},

Thank you for registering with Fernwood Supply{{with trait "company"}} on behalf of {{.}}{{end}}. The trade catalogue is at https://fernwoodsupply.example/trade.

Kind regards,
The Fernwood Supply team
--
Unsubscribe: {{.UnsubscribeURL}}
`

const newsletterText = `Fernwood Notes: the trail issue

Hi {{.Contact.FirstName | title | default "friend"}},

Spring is here and the trails are drying out. This month: a packing list we actually use, three boots our staff wore through the winter, and a recipe for the camp stove.

THE PACKING LIST
Ten things that live in our day packs from April to October, and the three we stopped carrying.
Read it: https://fernwoodsupply.example/blog/packing-list?utm_source=newsletter

BOOTS, WORN IN
Three pairs, four hundred miles, one honest review each.
https://fernwoodsupply.example/blog/boots-worn-in?utm_source=newsletter

CAMP KITCHEN: ONE-PAN HASH
Potatoes, peppers, an onion and a cast iron pan. Twenty minutes, two people.
https://fernwoodsupply.example/blog/one-pan-hash?utm_source=newsletter

Shipping is free on orders over {{money 75 "USD"}}, and returns are free for 60 days.

See you out there,
Maya and the Fernwood crew

--
You are receiving this because you signed up at fernwoodsupply.example.
Preferences: {{.PreferencesURL}}
Unsubscribe: {{.UnsubscribeURL}}
`

const newsletterFormalText = `Fernwood Supply: trade notes

Hello {{.Contact.FirstName | title | default "there"}},

This month's trade notes{{with trait "company"}} for {{.}}{{end}}: spring volume pricing, the new consolidated shipping schedule and the updated trade catalogue.

Trade catalogue: https://fernwoodsupply.example/trade?utm_source=newsletter
Volume pricing: https://fernwoodsupply.example/trade/pricing?utm_source=newsletter

Shipping is complimentary on orders over {{money 75 "USD"}}.

Kind regards,
The Fernwood Supply team

--
Preferences: {{.PreferencesURL}}
Unsubscribe: {{.UnsubscribeURL}}
`

// newsletterHTML is shaped like listmonk's default campaign template (a
// style block, a header with a logo, a content column, a footer with the
// unsubscribe link), with a newsletter in it: about 10 KB rendered.
const newsletterHTML = `<!doctype html>
<html>
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1, minimum-scale=1">
<base target="_blank">
<title>Fernwood Notes</title>
<style>
body { background-color: #F0F1F3; font-family: 'Helvetica Neue', 'Segoe UI', Helvetica, sans-serif; font-size: 15px; line-height: 26px; margin: 0; color: #444; }
pre { background: #f4f4f4; padding: 2px; }
table { width: 100%; border: 1px solid #ddd; }
table td { border-color: #ddd; padding: 5px; }
.wrap { background-color: #fff; padding: 30px; max-width: 525px; margin: 0 auto; border-radius: 5px; }
.button { background: #0055d4; border-radius: 3px; text-decoration: none !important; color: #fff !important; font-weight: bold; padding: 10px 30px; display: inline-block; }
.button:hover { background: #111; }
.footer { text-align: center; font-size: 12px; color: #888; }
.footer a { color: #888; margin-right: 5px; }
.gutter { padding: 30px; }
img { max-width: 100%; height: auto; }
a { color: #0055d4; }
a:hover { color: #111; }
h2 { font-size: 20px; line-height: 28px; margin: 24px 0 8px; color: #2f2e2a; }
@media screen and (max-width: 600px) {
  .wrap { max-width: auto; }
  .gutter { padding: 10px; }
}
</style>
</head>
<body style="background-color: #F0F1F3;font-family: 'Helvetica Neue', 'Segoe UI', Helvetica, sans-serif;font-size: 15px;line-height: 26px;margin: 0;color: #444;">
<div class="gutter" style="padding: 30px;">&nbsp;</div>
<div class="wrap" style="background-color: #fff;padding: 30px;max-width: 525px;margin: 0 auto;border-radius: 5px;">
  <div class="header" style="text-align: left; padding-bottom: 15px; border-bottom: 1px solid #eee;">
    <a href="https://fernwoodsupply.example/?utm_source=newsletter"><img src="https://fernwoodsupply.example/static/logo.png" alt="Fernwood Supply" width="160" height="40" style="border: 0;"></a>
  </div>
  <p>Hi {{.Contact.FirstName | title | default "friend"}},</p>
  <p>Spring is here and the trails are drying out. This month: a packing list we actually use, three boots our staff wore through the winter, and a recipe for the camp stove. As always, reply to this email if you have a question: a real person reads every one.</p>
  <h2>The packing list</h2>
  <p><img src="https://fernwoodsupply.example/static/blog/packing-list.jpg" alt="A day pack, open, on a wooden table" width="525" height="300"></p>
  <p>Ten things that live in our day packs from April to October, and the three we stopped carrying. Spoiler: the second water bottle stays.</p>
  <p><a class="button" href="https://fernwoodsupply.example/blog/packing-list?utm_source=newsletter&amp;utm_medium=email" style="background: #0055d4;border-radius: 3px;text-decoration: none;color: #fff;font-weight: bold;padding: 10px 30px;display: inline-block;">Read the list</a></p>
  <h2>Boots, worn in</h2>
  <p>Three pairs, four hundred miles, one honest review each: the <a href="https://fernwoodsupply.example/shop/boots/ridge?utm_source=newsletter">Ridge</a>, the <a href="https://fernwoodsupply.example/shop/boots/alder?utm_source=newsletter">Alder</a> and the <a href="https://fernwoodsupply.example/shop/boots/cascade-mid?utm_source=newsletter">Cascade Mid</a>. Which one to buy depends less on the boot than on your feet; the review says how to tell.</p>
  <h2>Camp kitchen: one-pan hash</h2>
  <p>Potatoes, peppers, an onion and a cast iron pan. Twenty minutes, two people, one pan to clean. The <a href="https://fernwoodsupply.example/shop/camp-kitchen/skillet-10?utm_source=newsletter">10-inch skillet</a> is back in stock.</p>
  <h2>From the workshop</h2>
  <p><img src="https://fernwoodsupply.example/static/blog/workshop.jpg" alt="Waxed canvas bags drying on a rack in the workshop" width="525" height="300"></p>
  <p>Every waxed canvas bag we sell is finished by hand in our Portland workshop: two coats of a beeswax and paraffin blend, a day on the drying rack, and a last look at the seams before it is folded and boxed. This month Priya, who has run the finishing bench for six years, explains why we stopped using the cheaper pre-waxed fabric, what a re-waxing kit does for a ten-year-old bag, and how to tell when yours needs one. <a href="https://fernwoodsupply.example/blog/workshop-waxed-canvas?utm_source=newsletter">Read the workshop notes</a>.</p>
  <table role="presentation" cellpadding="0" cellspacing="0" border="0" style="width: 100%; border: 0; margin: 16px 0;">
    <tr>
      <td style="border: 0; padding: 8px; width: 33%; vertical-align: top; text-align: center;">
        <a href="https://fernwoodsupply.example/shop/bags/rucksack-28?utm_source=newsletter&amp;utm_content=grid"><img src="https://fernwoodsupply.example/static/shop/rucksack-28.jpg" alt="The 28-litre waxed rucksack" width="160" height="160" style="border: 0;"></a>
        <p style="margin: 6px 0 0; font-size: 13px; line-height: 18px;"><strong>Rucksack 28</strong><br>Waxed canvas, leather straps<br><span style="color: #2f7d32;">{{money 189 "USD"}}</span></p>
      </td>
      <td style="border: 0; padding: 8px; width: 33%; vertical-align: top; text-align: center;">
        <a href="https://fernwoodsupply.example/shop/bags/field-tote?utm_source=newsletter&amp;utm_content=grid"><img src="https://fernwoodsupply.example/static/shop/field-tote.jpg" alt="The field tote in olive" width="160" height="160" style="border: 0;"></a>
        <p style="margin: 6px 0 0; font-size: 13px; line-height: 18px;"><strong>Field tote</strong><br>Olive or tan, brass rivets<br><span style="color: #2f7d32;">{{money 98 "USD"}}</span></p>
      </td>
      <td style="border: 0; padding: 8px; width: 33%; vertical-align: top; text-align: center;">
        <a href="https://fernwoodsupply.example/shop/care/rewax-kit?utm_source=newsletter&amp;utm_content=grid"><img src="https://fernwoodsupply.example/static/shop/rewax-kit.jpg" alt="The re-waxing kit: a bar of wax, a cloth and a brush" width="160" height="160" style="border: 0;"></a>
        <p style="margin: 6px 0 0; font-size: 13px; line-height: 18px;"><strong>Re-waxing kit</strong><br>Enough for three bags<br><span style="color: #2f7d32;">{{money 24 "USD"}}</span></p>
      </td>
    </tr>
  </table>
  <h2>Dates for your calendar</h2>
  <ul style="padding-left: 20px; margin: 8px 0;">
    <li><strong>April 12</strong>: trail clean-up at Forest Park, coffee and gloves on us. <a href="https://fernwoodsupply.example/events/forest-park-cleanup?utm_source=newsletter">Sign up</a>.</li>
    <li><strong>April 19</strong>: free boot fitting at the Portland shop, 10am to 4pm, no appointment needed.</li>
    <li><strong>May 3</strong>: the spring repair café: bring a bag, a jacket or a tent with a problem and leave with a fix.</li>
  </ul>
  <table role="presentation" cellpadding="0" cellspacing="0" border="0" style="width: 100%; border: 0;">
    <tr>
      <td style="border: 0; padding: 5px; width: 50%;"><a href="https://fernwoodsupply.example/best-sellers?utm_source=newsletter">Best-sellers</a></td>
      <td style="border: 0; padding: 5px; width: 50%;"><a href="https://fernwoodsupply.example/new?utm_source=newsletter">New this month</a></td>
    </tr>
  </table>
  <p>Shipping is free on orders over {{money 75 "USD"}}, and returns are free for 60 days, even if you have used it.</p>
  <p>See you out there,<br>Maya and the Fernwood crew</p>
</div>
<div class="footer" style="text-align: center;font-size: 12px;color: #888;">
  <p>You are receiving this because you signed up at fernwoodsupply.example.<br>
    <a href="{{.PreferencesURL}}" style="color: #888;">Preferences</a>
    <a href="{{.UnsubscribeURL}}" style="color: #888;">Unsubscribe</a>
  </p>
  <p>Fernwood Supply &middot; outdoor and home goods</p>
</div>
<div class="gutter" style="padding: 30px;">&nbsp;</div>
</body>
</html>
`

// LatencyJourney is the latency benchmark's journey: a cart_updated event
// starts a sequence whose first email (short) is due at once.
const LatencyJourney = `sequences:
  - name: cart
    trigger: {event: cart_updated}
    steps:
      - {after: 0s, template: cart}
sending:
  frequency_cap: {max: 0, per: 7d}
  quiet_hours: {from: "00:00", to: "00:00"}
templates:
  - name: cart
    subject: "Your cart is saved"
    text: |
      Hi {{.Contact.FirstName | title | default "there"}}, we saved your cart.
      Unsubscribe: {{.UnsubscribeURL}}
`

// LoadSendContacts loads n subscribed contacts in awareness, with an
// email address and a first name; every fourth has a company (the formal
// tone). It also advances the contact id sequence.
func LoadSendContacts(ctx context.Context, pool *pgxpool.Pool, n int) error {
	now := time.Now().UTC()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"contacts"},
		[]string{"id", "user_id", "email", "traits", "stage", "stage_entered_at", "created_at", "updated_at"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			id := i + 1
			user := "cust-" + strconv.Itoa(id)
			traits := `{"first_name":"` + sendNames[id%len(sendNames)] + `","plan":"free","locale":"en-US"`
			if id%4 == 0 {
				traits += `,"company":"Lodge ` + strconv.Itoa(id) + `"`
			}
			traits += "}"
			return []any{int64(id), user, user + "@example.com", traits, "awareness", now, now, now}, nil
		})); err != nil {
		return fmt.Errorf("copying contacts: %w", err)
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"identities"}, []string{"identity", "contact_id"},
		pgx.CopyFromSlice(n, func(i int) ([]any, error) {
			return []any{"u:cust-" + strconv.Itoa(i+1), int64(i + 1)}, nil
		})); err != nil {
		return fmt.Errorf("copying identities: %w", err)
	}
	if _, err := pool.Exec(ctx, `SELECT setval('contact_id_seq', $1)`, int64(n)); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `ANALYZE contacts, identities`)
	return err
}

var sendNames = []string{"ana", "bo", "chidi", "dana", "emil", "fatima", "goran", "hana", "ines", "jun"}

// PostfixTool finds one of Postfix's test programs (smtp-sink,
// smtp-source), which live in /usr/sbin on Debian.
func PostfixTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/lib/postfix/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: it comes with Postfix (Debian: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)", name)
}

// Sink is a running smtp-sink on a loopback port.
type Sink struct {
	Host string
	Port int
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
}

// StartSink starts Postfix's smtp-sink on 127.0.0.1 at a free port and
// waits until it accepts connections.
func StartSink(ctx context.Context) (*Sink, error) {
	path, err := PostfixTool("smtp-sink")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody") // smtp-sink refuses to run as root
	}
	// -t: command time-out; backlog 1000.
	args = append(args, "-t", "30", "127.0.0.1:"+strconv.Itoa(port), "1000")
	s := &Sink{Host: "127.0.0.1", Port: port, done: make(chan struct{})}
	s.cmd = exec.Command(path, args...)
	s.cmd.Stdout = &s.out
	s.cmd.Stderr = &s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting smtp-sink: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("smtp-sink exited: %s", strings.TrimSpace(s.out.String()))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("smtp-sink does not accept connections on %s: %v", s.Addr(), err)
		}
	}
}

// Addr is host:port.
func (s *Sink) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Command is the command line the sink runs.
func (s *Sink) Command() string { return strings.Join(s.cmd.Args, " ") }

// CPU is the CPU time smtp-sink has used so far.
func (s *Sink) CPU() time.Duration { return ProcCPU(s.cmd.Process.Pid) }

// Stop stops smtp-sink.
func (s *Sink) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// ProcCPU returns the user+system CPU time of process pid (Linux; 0
// elsewhere or when it is gone).
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(s[i+1:])
	if len(fs) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// SourceResult is one smtp-source run.
type SourceResult struct {
	Command string
	Elapsed time.Duration
	CPU     time.Duration // smtp-source's own
}

// SMTPSource runs Postfix's smtp-source: n messages of size bytes of
// payload over conns parallel sessions to addr. With persistent, each
// session sends all its messages over one connection (-d), as the sender
// does; without, it connects again for every message.
func SMTPSource(ctx context.Context, addr string, n, conns, size int, persistent bool) (SourceResult, error) {
	path, err := PostfixTool("smtp-source")
	if err != nil {
		return SourceResult{}, err
	}
	args := []string{}
	if persistent {
		args = append(args, "-d")
	}
	args = append(args, "-l", strconv.Itoa(size), "-m", strconv.Itoa(n), "-s", strconv.Itoa(conns),
		"-f", "news@fernwood.example", "-t", "reader@example.com", "-S", "Fernwood Notes", addr)
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	r := SourceResult{Command: "smtp-source " + strings.Join(args, " "), Elapsed: time.Since(start)}
	if cmd.ProcessState != nil {
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w: %s", r.Command, err, strings.TrimSpace(out.String()))
	}
	return r, nil
}

// BareMessage is the content of the bare loop's messages.
type BareMessage struct {
	From, Subject, Text, HTML string
	Headers                   [][2]string // extra fields (List-Unsubscribe...)
	Date                      time.Time
}

// Build builds the i-th message (its own recipient and Message-ID), as
// waymark's mailer builds one: From, To, Subject, Message-ID, Date, a text
// part and, when there is HTML, an HTML alternative.
func (m BareMessage) Build(i int) (*gomail.Msg, error) {
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := msg.From(m.From); err != nil {
		return nil, err
	}
	if err := msg.To("cust-" + strconv.Itoa(i+1) + "@example.com"); err != nil {
		return nil, err
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(fmt.Sprintf("%d.%d@fernwood.example", i+1, i+1))
	msg.SetDateWithValue(m.Date)
	for _, h := range m.Headers {
		msg.SetGenHeader(gomail.Header(h[0]), h[1])
	}
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// Size is the size of the built message on the wire (headers included).
func (m BareMessage) Size() (int, error) {
	msg, err := m.Build(0)
	if err != nil {
		return 0, err
	}
	var b bytes.Buffer
	if _, err := msg.WriteTo(&b); err != nil {
		return 0, err
	}
	return b.Len(), nil
}

// BareResult is one bare go-mail loop.
type BareResult struct {
	Sent    int
	Elapsed time.Duration // dialling included, building the messages not
	Build   time.Duration
}

// BareGoMail sends n messages built from m beforehand over conns
// persistent go-mail clients (WithoutNoop and WithoutRset, as waymark's
// mailer): no database, no rendering.
func BareGoMail(ctx context.Context, host string, port, n, conns int, m BareMessage) (BareResult, error) {
	var r BareResult
	start := time.Now()
	msgs := make([]*gomail.Msg, n)
	for i := range msgs {
		msg, err := m.Build(i)
		if err != nil {
			return r, err
		}
		msgs[i] = msg
	}
	r.Build = time.Since(start)
	var (
		next  atomic.Int64
		sent  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	start = time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := gomail.NewClient(host, gomail.WithPort(port), gomail.WithTLSPolicy(gomail.NoTLS),
				gomail.WithoutNoop(), gomail.WithoutRset(), gomail.WithTimeout(30*time.Second))
			if err != nil {
				fail(err)
				return
			}
			if err := c.DialWithContext(ctx); err != nil {
				fail(err)
				return
			}
			defer c.Close()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				if err := c.Send(msgs[i]); err != nil {
					fail(err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.Sent = int(sent.Load())
	if first == nil && r.Sent != n {
		first = errors.New("bare go-mail loop: stopped early")
	}
	return r, first
}

// SQLStats is a pgx tracer that adds up, per statement, how many times it
// ran and how long the client waited for it (round trip included).
type SQLStats struct {
	mu sync.Mutex
	by map[string]*SQLStat
}

// SQLStat is one statement's count and time.
type SQLStat struct {
	Name  string
	Count int
	Total time.Duration
}

type sqlStartKey struct{}

type sqlStart struct {
	name string
	at   time.Time
}

// TraceQueryStart implements pgx.QueryTracer.
func (s *SQLStats) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlStartKey{}, sqlStart{name: sqlName(data.SQL), at: time.Now()})
}

// TraceQueryEnd implements pgx.QueryTracer.
func (s *SQLStats) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if st, ok := ctx.Value(sqlStartKey{}).(sqlStart); ok {
		s.add(st)
	}
}

type batchStartKey struct{}

// TraceBatchStart implements pgx.BatchTracer: a pipelined batch counts as
// one statement, named after its statements.
func (s *SQLStats) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	var names []string
	if data.Batch != nil {
		for _, q := range data.Batch.QueuedQueries {
			f := strings.Fields(q.SQL)
			if len(f) > 2 {
				f = f[:2]
			}
			names = append(names, strings.Join(f, " "))
		}
	}
	return context.WithValue(ctx, batchStartKey{}, sqlStart{name: "batch: " + strings.Join(names, "; "), at: time.Now()})
}

// TraceBatchQuery implements pgx.BatchTracer.
func (s *SQLStats) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (s *SQLStats) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	if st, ok := ctx.Value(batchStartKey{}).(sqlStart); ok {
		s.add(st)
	}
}

func (s *SQLStats) add(st sqlStart) {
	d := time.Since(st.at)
	s.mu.Lock()
	if s.by == nil {
		s.by = map[string]*SQLStat{}
	}
	x := s.by[st.name]
	if x == nil {
		x = &SQLStat{Name: st.name}
		s.by[st.name] = x
	}
	x.Count++
	x.Total += d
	s.mu.Unlock()
}

// Reset forgets what was counted.
func (s *SQLStats) Reset() {
	s.mu.Lock()
	s.by = nil
	s.mu.Unlock()
}

// Top returns the statements by total time, longest first.
func (s *SQLStats) Top() []SQLStat {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SQLStat, 0, len(s.by))
	for _, x := range s.by {
		out = append(out, *x)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Total > out[j-1].Total; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// sqlName is a short name for a statement: its first words, squeezed.
func sqlName(sql string) string {
	f := strings.Fields(sql)
	if len(f) > 8 {
		f = f[:8]
	}
	s := strings.Join(f, " ")
	if len(s) > 70 {
		s = s[:70]
	}
	return s
}
