package mailer

import (
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// classify turns go-mail's answer to Client.Send of one message into a
// Result, and says whether the connection is still fit for the next
// message (false: drop it and dial again).
//
//	go-mail SendError.Reason   server answered   no answer (network, timeout, cancel)
//	MAIL FROM / RCPT TO        4xx TempFail      TempFail (nothing handed over)
//	                           5xx PermFail
//	DATA (waiting for 354)     4xx / 5xx         TempFail
//	writing the content        -                 TempFail (the final dot never went out)
//	closing DATA (final dot)   4xx / 5xx         Unknown, or TempFail when a write
//	                                             failed, so the dot never went out
//
// writeFailed says whether a write on the connection failed during the
// send: go-mail's DATA closer drops the error of flushing the final dot.
func classify(err error, msg *gomail.Msg, writeFailed bool) (Result, bool) {
	if err == nil {
		resp := msg.ServerResponse()
		return Result{Outcome: Sent, Code: 250, Enhanced: enhancedRE.FindString(resp), Response: resp, Stage: StageData}, true
	}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		// go-mail's Send returns only SendErrors; be safe if that changes.
		if msg.IsDelivered() {
			return Result{Outcome: Sent, Code: 250, Stage: StageData}, false
		}
		return Result{Outcome: Unknown, Stage: StageData, Err: err}, false
	}

	code := se.ErrorCode()
	res := Result{Code: code, Enhanced: se.EnhancedStatusCode(), Response: replyText(se, code), Err: err}
	if res.Enhanced == "" {
		res.Enhanced = enhancedRE.FindString(res.Response)
	}
	answered := code >= 400 && code < 600
	byCode := TempFail
	if code >= 500 {
		byCode = PermFail
	}

	switch se.Reason {
	case gomail.ErrGetSender, gomail.ErrGetRcpts, gomail.ErrNoUnencoded:
		res.Outcome, res.Stage = PermFail, StageBuild
		res.Err = fmt.Errorf("%w: %w", ErrInvalidMessage, err)
		return res, true
	case gomail.ErrConnCheck:
		res.Outcome, res.Stage = TempFail, StageConnect
		return res, false
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo:
		res.Stage = StageMail
		if se.Reason == gomail.ErrSMTPRcptTo {
			res.Stage = StageRcpt
		}
		if answered {
			// go-mail sent RSET; the connection goes on unless the
			// server said it is closing it.
			res.Outcome = byCode
			return res, code != 421
		}
		res.Outcome = TempFail
		return res, false
	case gomail.ErrSMTPData:
		res.Stage = StageData
		res.Outcome = TempFail
		if answered {
			res.Outcome = byCode
		}
		return res, false
	case gomail.ErrWriteContent:
		res.Outcome, res.Stage = TempFail, StageData
		return res, false
	case gomail.ErrSMTPDataClose:
		res.Stage = StageData
		if answered {
			res.Outcome = byCode
			return res, code != 421
		}
		res.Outcome = Unknown
		if writeFailed {
			res.Outcome = TempFail
		}
		return res, false
	}
	// ErrSMTPReset (not sent: WithoutRset), ErrAmbiguous (one message per
	// Send), or a reason added later.
	if msg.IsDelivered() {
		resp := msg.ServerResponse()
		return Result{Outcome: Sent, Code: 250, Enhanced: enhancedRE.FindString(resp), Response: resp, Stage: StageData}, false
	}
	res.Outcome, res.Stage = Unknown, StageData
	return res, false
}

// replyText digs the server's reply text out of a SendError, which does
// not expose the errors it wraps.
func replyText(se *gomail.SendError, code int) string {
	if code == 0 {
		return ""
	}
	s := strings.TrimPrefix(se.Error(), se.Reason.String()+": ")
	c := strconv.Itoa(code)
	if !strings.HasPrefix(s, c+" ") && !strings.HasPrefix(s, c+"-") {
		return ""
	}
	s = s[len(c)+1:]
	for _, tail := range []string{", affected recipient(s): ", ", affected message ID: "} {
		if i := strings.Index(s, tail); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// staleConnection reports whether res is what a connection that died while
// idle looks like: no answer, or 421, to the first command of the send,
// before anything of the message was handed over.
func staleConnection(res Result) bool {
	if res.Outcome != TempFail {
		return false
	}
	return res.Stage == StageConnect || (res.Stage == StageMail && (res.Code == 0 || res.Code == 421))
}

// connectFailure is the Result for a message that could not be sent because
// the connection could not be set up; the message itself was never offered.
func connectFailure(err error) Result {
	res := Result{Outcome: TempFail, Stage: StageConnect, Err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		res.Code, res.Response = te.Code, te.Msg
		res.Enhanced = enhancedRE.FindString(te.Msg)
	}
	return res
}
