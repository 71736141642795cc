package mailer

import (
	"errors"
	"net/textproto"
	"regexp"
)

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)

// How a send ends (Begin and Commit in tx.go):
//
//	stage                        server answered   no answer (network, timeout, cancel)
//	MAIL FROM / RCPT TO          4xx TempFail      TempFail (nothing handed over)
//	                             5xx PermFail
//	DATA (waiting for 354)       4xx / 5xx         TempFail
//	writing the content          -                 TempFail (the final dot never went out)
//	final dot                    4xx / 5xx         Unknown, or TempFail when a write
//	                                               failed, so the dot never went out

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
