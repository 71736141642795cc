package mailer

import (
	"strings"
	"testing"
)

// go-mail folds the DKIM-Signature field tag by tag, but splits a tag that
// does not fit on a line of its own inside its value, and then signs the
// unsplit value: the signature no longer verifies. Keep h= short.
func TestDKIMSignedHeadersFitOneLine(t *testing.T) {
	t.Parallel()
	tag := "h=" + strings.Join(dkimSignedHeaders, ":") + "; "
	if len(tag) > maxDKIMTagLen {
		t.Errorf("%q is %d bytes, more than the %d go-mail can fold without breaking the signature", tag, len(tag), maxDKIMTagLen)
	}
}
