package bounce

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/waymark/waymark/internal/mimeparts"
)

// ErrNotANotice is a returned email that is neither a delivery status
// notification nor an abuse report (an auto-reply to the return path, a
// person's answer): there is nothing in it to record.
var ErrNotANotice = errors.New("not a delivery status notification or an abuse report")

// Notice is what a mail server returned by email: a delivery status
// notification (RFC 3464: multipart/report; report-type=delivery-status)
// or an abuse feedback report (ARF, RFC 5965: report-type=feedback-report).
type Notice struct {
	// ID identifies the notice: its Message-ID, or a digest of its content
	// when it has none (so the same notice delivered twice counts once).
	ID string
	// Recipients are a DSN's per-recipient reports.
	Recipients []NoticeRecipient
	// Feedback is an ARF report's Feedback-Type ("abuse", "fraud"…); ""
	// for a DSN.
	Feedback string
	// Original are the Message-IDs of the email the notice is about, from
	// the copy of it (or of its header) the notice carries.
	Original []string
	// At is when the reporting server says it happened (zero: unknown).
	At time.Time
}

// NoticeRecipient is one recipient's fields of a DSN.
type NoticeRecipient struct {
	Recipient  string // Original-Recipient if given, else Final-Recipient; the address only
	Action     string // failed, delayed, delivered, relayed, expanded
	Status     string // e.g. 5.1.1
	Diagnostic string
}

// maxNotice bounds the bytes of one notice part read.
const maxNotice = 1 << 20

// ParseNotice reads a returned email. It fails with ErrNotANotice for
// anything that is not a DSN or an ARF report, and with another error for
// a report whose MIME or fields are broken.
func ParseNotice(raw []byte) (Notice, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Notice{}, ErrNotANotice
	}
	h := textproto.MIMEHeader(msg.Header)
	var n Notice
	kind := ""
	err = mimeparts.Walk(h, msg.Body, func(l mimeparts.Leaf) error {
		switch l.Media {
		case "message/delivery-status", "message/global-delivery-status":
			kind = "dsn"
			blocks, err := leafBlocks(l)
			if err != nil {
				return err
			}
			for i, b := range blocks {
				if i == 0 {
					n.At = dateOf(b.Get("Arrival-Date"))
					continue
				}
				r := NoticeRecipient{
					Recipient:  addressOf(b.Get("Original-Recipient")),
					Action:     strings.ToLower(strings.TrimSpace(b.Get("Action"))),
					Status:     strings.TrimSpace(b.Get("Status")),
					Diagnostic: strings.Join(strings.Fields(b.Get("Diagnostic-Code")), " "),
				}
				if r.Recipient == "" {
					r.Recipient = addressOf(b.Get("Final-Recipient"))
				}
				if at := dateOf(b.Get("Last-Attempt-Date")); !at.IsZero() {
					n.At = at
				}
				if r.Action != "" {
					n.Recipients = append(n.Recipients, r)
				}
			}
		case "message/feedback-report":
			kind = "arf"
			blocks, err := leafBlocks(l)
			if err != nil {
				return err
			}
			if len(blocks) > 0 {
				n.Feedback = strings.ToLower(strings.TrimSpace(blocks[0].Get("Feedback-Type")))
				n.At = dateOf(blocks[0].Get("Arrival-Date"))
			}
		case "text/rfc822-headers", "message/rfc822", "message/global", "message/global-headers":
			body, err := mimeparts.Decode(l)
			if err != nil {
				return err
			}
			if m, err := mail.ReadMessage(bytes.NewReader(append(body, "\r\n\r\n"...))); err == nil {
				if id := strings.TrimSpace(m.Header.Get("Message-Id")); id != "" {
					n.Original = append(n.Original, id)
				}
			}
		}
		return nil
	})
	if kind == "" {
		return Notice{}, ErrNotANotice
	}
	if err != nil {
		return Notice{}, fmt.Errorf("a broken report: %w", err)
	}
	if kind == "dsn" && len(n.Recipients) == 0 {
		return Notice{}, errors.New("a delivery status notification without a recipient's Action")
	}
	if kind == "arf" && n.Feedback == "" {
		return Notice{}, errors.New("an abuse report without Feedback-Type")
	}
	n.ID = strings.TrimSpace(msg.Header.Get("Message-Id"))
	if n.ID == "" {
		sum := sha256.Sum256(raw)
		n.ID = "sha256:" + hex.EncodeToString(sum[:16])
	}
	return n, nil
}

// leafBlocks reads a report part's groups of fields (RFC 3464 section 2:
// the per-message fields, then one group a recipient, blank lines apart).
func leafBlocks(l mimeparts.Leaf) ([]textproto.MIMEHeader, error) {
	body, err := mimeparts.Decode(mimeparts.Leaf{Media: l.Media, Header: l.Header, Body: io.LimitReader(l.Body, maxNotice)})
	if err != nil {
		return nil, err
	}
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	var out []textproto.MIMEHeader
	for _, group := range strings.Split(string(body), "\n\n") {
		if strings.TrimSpace(group) == "" {
			continue
		}
		r := textproto.NewReader(bufio.NewReader(strings.NewReader(strings.TrimLeft(group, "\n") + "\n\n")))
		h, err := r.ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return nil, fmt.Errorf("%s: %w", l.Media, err)
		}
		out = append(out, h)
	}
	return out, nil
}

// addressOf is the address of an "rfc822; user@host" field.
func addressOf(v string) string {
	if _, a, ok := strings.Cut(v, ";"); ok {
		v = a
	}
	return strings.ToLower(strings.Trim(strings.TrimSpace(v), "<>"))
}

// obsoleteZones are RFC 5322's obsolete zone names (section 4.3), which
// Go reads as unknown zones at UTC.
var obsoleteZones = map[string]int{"EDT": -4, "EST": -5, "CDT": -5, "CST": -6, "MDT": -6, "MST": -7, "PDT": -7, "PST": -8}

// dateOf reads a date field (zero when it does not parse).
func dateOf(v string) time.Time {
	t, err := mail.ParseDate(strings.TrimSpace(v))
	if err != nil {
		return time.Time{}
	}
	if name, off := t.Zone(); off == 0 {
		if h, ok := obsoleteZones[name]; ok {
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.FixedZone(name, h*3600))
		}
	}
	return t
}

// Outcome is what a notice says happened to the email, as a report kind
// and bounce type; ok is false when there is nothing to record (a delay
// warning, an ARF report saying "not spam").
//
// A DSN's recipients are ranked failed (hard) over failed (soft) over
// delivered: Waymark's emails have one recipient, and a server that
// reports several reports the worst. A failure is hard when its status is
// permanent (5.x.x) — except 5.2.2 (mailbox full) and 5.7.x (a policy or
// a block), which may pass and count as soft, as do 4.x.x failures (a
// server gave up after temporary errors).
func (n Notice) Outcome() (kind Kind, bounceType string, r NoticeRecipient, ok bool) {
	if n.Feedback != "" {
		return Complained, "", NoticeRecipient{}, n.Feedback != "not-spam"
	}
	rank := 0
	for _, x := range n.Recipients {
		k, bt, rk := Delivered, "", 0
		switch x.Action {
		case "failed":
			k, bt, rk = Bounced, Soft, 2
			if strings.HasPrefix(x.Status, "5.") && x.Status != "5.2.2" && !strings.HasPrefix(x.Status, "5.7.") {
				bt, rk = Hard, 3
			}
		case "delivered", "relayed", "expanded":
			rk = 1
		}
		if rk > rank {
			kind, bounceType, r, rank = k, bt, x, rk
		}
	}
	return kind, bounceType, r, rank > 0
}
