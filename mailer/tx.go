package mailer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"time"
)

// Tx is one message handed to the server up to, and not including, the
// final "." of its DATA: MAIL FROM, RCPT TO and DATA were accepted and the
// content is written (or buffered). An SMTP server takes responsibility
// for a message only when it answers 250 to that final dot, so until
// Commit the server cannot have accepted it: Abort drops the connection
// and the server discards what it got (RFC 5321 §4.1.1.4: a transaction
// without its end of data is not delivered). RSET cannot be used here:
// after DATA's 354 everything up to the dot is message content.
//
// A Tx belongs to its Conn; the Conn may not be used until the Tx is
// committed or aborted.
type Tx struct {
	c        *Conn
	w        io.WriteCloser // the DATA writer when the content needed textproto's; Close writes the final dot
	endsLine bool           // otherwise: whether the content written ended with a line break
	done     bool
}

// Begin builds m and hands it to the server up to its final dot. On
// failure it returns a nil Tx and what became of the message (never Sent
// nor Unknown: nothing can have been accepted). When a reused connection
// turns out dead before anything was handed over, it dials once more and
// retries.
func (c *Conn) Begin(ctx context.Context, m *Message) (*Tx, Result) {
	var (
		from, rcpt string
		written    bool // m's MAIL FROM, RCPT TO and DATA went out behind the last dot
	)
	if n := c.next; n != nil && n.m == m && c.connected {
		from, rcpt, written = n.from, n.rcpt, n.written
	} else {
		if n != nil && n.written {
			// Another message's commands are out: the session is out
			// of step with this one.
			c.drop()
		}
		var err error
		if from, rcpt, err = c.render(m); err != nil {
			c.next = nil
			return nil, Result{Outcome: PermFail, Stage: StageBuild, Err: err}
		}
	}
	c.next = nil
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if written {
				c.drop() // the server waits for the answered commands' content
			}
			return nil, Result{Outcome: TempFail, Stage: StageConnect, Err: err}
		}
		reused := c.connected
		if !reused {
			written = false
			if err := c.connect(ctx); err != nil {
				return nil, connectFailure(fmt.Errorf("dialing %s: %w", c.d.addr, err))
			}
		}
		tx, res, keep := c.beginOnce(ctx, from, rcpt, written)
		written = false
		if tx != nil {
			return tx, Result{}
		}
		if !keep {
			c.drop()
		}
		if reused && attempt == 0 && staleConnection(res) {
			continue
		}
		return nil, res
	}
}

// render builds m into c.body (signed when DKIM is configured) and returns
// the envelope's sender and recipient.
func (c *Conn) render(m *Message) (from, rcpt string, err error) {
	msg, err := build(m, c.d.now())
	if err != nil {
		return "", "", err
	}
	from, err = msg.GetSender(false)
	if err != nil {
		return "", "", fmt.Errorf("%w: sender: %v", ErrInvalidMessage, err)
	}
	rcpts, err := msg.GetRecipients()
	if err != nil || len(rcpts) != 1 {
		return "", "", fmt.Errorf("%w: recipients %v: %v", ErrInvalidMessage, rcpts, err)
	}
	c.body.Reset()
	if _, err := msg.WriteTo(&c.body); err != nil {
		return "", "", fmt.Errorf("%w: writing the message: %v", ErrInvalidMessage, err)
	}
	c.body.Write(appendBody(c.body.AvailableBuffer(), m))
	if c.dkim != nil {
		// As go-mail signs: the header block with its last CRLF, and
		// the body after the blank line.
		all := c.body.Bytes()
		i := bytes.Index(all, []byte("\r\n\r\n"))
		if i < 0 {
			return "", "", fmt.Errorf("%w: no end of header", ErrInvalidMessage)
		}
		sig, err := c.dkim.Sign(all[:i+2], all[i+4:])
		if err != nil {
			return "", "", fmt.Errorf("%w: DKIM signing: %v", ErrInvalidMessage, err)
		}
		c.signed.Reset()
		c.signed.WriteString(sig)
		c.signed.Write(all)
		c.body, c.signed = c.signed, c.body
	}
	return from, rcpts[0], nil
}

// Next announces m as the message c sends after the open transaction,
// and builds it. With PIPELINING, the transaction's Commit then writes m's
// MAIL FROM, RCPT TO and DATA right behind its final dot, in the same
// write (RFC 2920 lets message content begin a group of commands), and
// Begin(m) reads their answers instead of writing them: a write, and a
// wake-up of the server, fewer per message. m's content still waits for
// Begin, and its final dot for its Commit, so the server can no more
// accept m before then than without Next. Without PIPELINING, or if m
// cannot be built, Begin(m) does all of it as usual (and says why m
// cannot be built).
func (c *Conn) Next(m *Message) {
	c.next = nil
	if !c.pipelining || !c.connected {
		return
	}
	from, rcpt, err := c.render(m)
	if err != nil {
		return
	}
	c.next = &nextMessage{m: m, from: from, rcpt: rcpt}
}

// nextMessage is a message announced by Next: its envelope, and whether
// its commands were written.
type nextMessage struct {
	m          *Message
	from, rcpt string
	written    bool
}

// command is an SMTP command line with the answer it wants and the stage
// it is.
type command struct {
	line  string
	want  int
	stage Stage
}

// pipelined is the commands that begin a message, in order.
func pipelined(from, mailParams, rcpt string) [3]command {
	return [3]command{
		{"MAIL FROM:" + from + mailParams, 250, StageMail},
		{"RCPT TO:" + rcpt, 25, StageRcpt},
		{"DATA", 354, StageData},
	}
}

// writeCommands buffers the command lines.
func writeCommands(w *bufio.Writer, cmds []command) {
	for _, cmd := range cmds {
		_, _ = w.WriteString(cmd.line)
		_, _ = w.WriteString("\r\n")
	}
}

// beginOnce runs MAIL FROM, RCPT TO and DATA, in one write when the server
// offers PIPELINING (RFC 2920), and writes the content; written: the
// commands were written already (behind the last message's dot, see
// Next), only their answers are read. keep says whether the connection is
// fit for the next message after a failure.
func (c *Conn) beginOnce(ctx context.Context, from, rcpt string, written bool) (*Tx, Result, bool) {
	end := c.raw.begin(ctx, time.Time{})
	defer end()
	text := c.smtp.Text
	cmds := pipelined(from, c.mailParams, rcpt)
	var (
		failed Result
		keep   = true
		sent   = 0 // commands written
		read   = 0 // answers read
	)
	write := func(upto int) bool {
		writeCommands(text.W, cmds[sent:upto])
		sent = upto
		if err := text.W.Flush(); err != nil {
			failed, keep = c.failure(ctx, cmds[read].stage, err), false
			return false
		}
		return true
	}
	// answer reads the next answer; false once the transaction failed.
	answer := func() bool {
		cmd := cmds[read]
		read++
		code, msg, err := text.ReadResponse(cmd.want)
		if err == nil {
			return failed.Outcome == 0
		}
		var te *textproto.Error
		if !errors.As(err, &te) {
			if failed.Outcome == 0 {
				failed = c.failure(ctx, cmd.stage, err)
			}
			keep = false
			return false
		}
		if failed.Outcome == 0 {
			failed = Result{Outcome: TempFail, Code: code, Enhanced: enhancedRE.FindString(msg), Response: msg, Stage: cmd.stage,
				Err: fmt.Errorf("%s: %w", cmd.line[:4], err)}
			if code >= 500 {
				failed.Outcome = PermFail
			}
			if code == 421 {
				keep = false
			}
		}
		if cmd.want == 354 && code == 354 {
			// DATA was accepted although an earlier command was
			// refused: end the empty content at once.
			_, _ = text.W.WriteString(".\r\n")
			if text.W.Flush() != nil {
				keep = false
			} else if _, _, err := text.ReadResponse(250); err != nil && !errors.As(err, &te) {
				keep = false
			}
		}
		return false
	}
	if written {
		sent = 3
	}
	if c.pipelining {
		if !write(3) {
			return nil, failed, false
		}
		for read < 3 && keep {
			answer()
		}
	} else {
		for read < 3 && failed.Outcome == 0 {
			if !write(read + 1) {
				return nil, failed, false
			}
			answer()
		}
	}
	if failed.Outcome != 0 {
		if failed.Stage == StageData {
			// go-mail dropped the connection after a refused DATA; so do we.
			keep = false
		}
		if keep {
			// Leave the server in its initial state for the next message.
			if _, _, err := c.smtpCmd("RSET", 250); err != nil {
				var te *textproto.Error
				if !errors.As(err, &te) || te.Code == 421 {
					keep = false
				}
			}
		}
		return nil, failed, keep
	}
	if content := c.body.Bytes(); crlfOnly(content) {
		// Written as it is, dot-stuffed; a write error shows at Commit
		// (the bufio.Writer keeps it), before the final dot.
		return &Tx{c: c, endsLine: writeDotStuffed(text.W, content)}, Result{}, true
	}
	w := text.DotWriter()
	if _, err := w.Write(c.body.Bytes()); err != nil {
		return nil, c.failure(ctx, StageData, err), false
	}
	return &Tx{c: c, w: w}, Result{}, true
}

// smtpCmd writes one command and reads its answer.
func (c *Conn) smtpCmd(line string, want int) (int, string, error) {
	text := c.smtp.Text
	_, _ = text.W.WriteString(line)
	_, _ = text.W.WriteString("\r\n")
	if err := text.W.Flush(); err != nil {
		return 0, "", err
	}
	return text.ReadResponse(want)
}

// failure is the Result of a network failure (no answer) at stage, before
// the final dot was written: nothing was accepted.
func (c *Conn) failure(ctx context.Context, stage Stage, err error) Result {
	if cerr := ctxErr(ctx); cerr != nil {
		err = fmt.Errorf("%w: %w", cerr, err)
	}
	return Result{Outcome: TempFail, Stage: stage, Err: err}
}

// Commit writes the final dot and reads the server's answer: the message
// is Sent, refused (TempFail, PermFail), or Unknown when the dot went out
// and no answer came.
func (t *Tx) Commit(ctx context.Context) Result {
	if t.done {
		return Result{Outcome: TempFail, Stage: StageData, Err: errors.New("mailer: transaction already ended")}
	}
	t.done = true
	c := t.c
	end := c.raw.begin(ctx, time.Time{})
	var cerr error
	if t.w != nil {
		cerr = t.w.Close()
	} else {
		w := c.smtp.Text.W
		writeEnd(w, t.endsLine)
		if n := c.next; n != nil {
			// The announced message's commands, in the dot's write.
			cmds := pipelined(n.from, c.mailParams, n.rcpt)
			writeCommands(w, cmds[:])
			n.written = true
		}
		cerr = w.Flush()
	}
	writeFailed := cerr != nil || c.raw.writeFailed()
	var (
		code int
		msg  string
		err  error
	)
	if !writeFailed {
		code, msg, err = c.smtp.Text.ReadResponse(250)
	}
	end()
	if writeFailed {
		// The final dot did not go out whole: the server cannot have
		// accepted the message.
		c.drop()
		if cerr == nil {
			cerr = errors.New("writing the message failed")
		}
		return c.failure(ctx, StageData, cerr)
	}
	res := Result{Code: code, Enhanced: enhancedRE.FindString(msg), Response: msg, Stage: StageData}
	if err == nil {
		res.Outcome = Sent
		return res
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		res.Outcome = TempFail
		if code >= 500 {
			res.Outcome = PermFail
		}
		res.Err = fmt.Errorf("end of DATA: %w", err)
		if code == 421 {
			c.drop()
		}
		return res
	}
	c.drop()
	res.Outcome, res.Code = Unknown, 0
	res.Err = err
	if cerr := ctxErr(ctx); cerr != nil {
		res.Err = fmt.Errorf("%w: %w", cerr, err)
	}
	return res
}

// Abort ends the transaction without the final dot by dropping the
// connection: the server cannot have accepted the message. The next Begin
// dials again.
func (t *Tx) Abort() {
	if t.done {
		return
	}
	t.done = true
	t.c.drop()
}
