package mailer

import (
	"crypto"
	"errors"
	"fmt"

	gomail "github.com/wneessen/go-mail"
)

// DKIMConfig signs every message with DKIM (RFC 6376; RFC 8463 for
// Ed25519), relaxed/relaxed, using go-mail's signer.
type DKIMConfig struct {
	Domain   string // d=, the signing domain; should be From's domain to align for DMARC
	Selector string // s=; the public key is published at <Selector>._domainkey.<Domain>
	KeyPEM   []byte // RSA or Ed25519 private key, PKCS#1 or PKCS#8 PEM
}

// dkimSignedHeaders is the h= list. It must stay short enough that
// go-mail's folding of the DKIM-Signature field never breaks the h= tag
// inside a value, which would break the signature (TestDKIM verifies it;
// TestDKIMSignedHeadersFitOneLine guards the length).
var dkimSignedHeaders = []string{
	"From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// maxDKIMTagLen is the longest "tag=value; " go-mail can put on a folded
// line of its own without splitting the value (a 76-column line less the
// folding space).
const maxDKIMTagLen = 75

type dkimKey struct {
	domain, selector string
	key              crypto.Signer
}

func parseDKIM(cfg *DKIMConfig) (*dkimKey, error) {
	if cfg == nil {
		return nil, nil
	}
	if cfg.Domain == "" || cfg.Selector == "" {
		return nil, errors.New("DKIM needs a domain and a selector")
	}
	if len("d="+cfg.Domain+"; ") > maxDKIMTagLen || len("s="+cfg.Selector+"; ") > maxDKIMTagLen {
		return nil, errors.New("DKIM domain or selector too long")
	}
	key, err := gomail.PrivKeyFromPEM(cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading DKIM key: %w", err)
	}
	k := &dkimKey{domain: cfg.Domain, selector: cfg.Selector, key: key}
	if err := k.signer().ValidateConfig(); err != nil {
		return nil, fmt.Errorf("DKIM: %w", err)
	}
	return k, nil
}

// signer returns a new go-mail signer. Each Conn has its own: go-mail's
// Signer records its algorithm on first use, so it must not be shared
// between goroutines.
func (k *dkimKey) signer() *gomail.DKIMSigner {
	s := gomail.NewDKIMSigner(k.domain, k.selector, k.key)
	s.HeaderCanonicalization(gomail.CanonicalizationRelaxed)
	s.BodyCanonicalization(gomail.CanonicalizationRelaxed)
	s.SignHeaders(dkimSignedHeaders...)
	return s
}
