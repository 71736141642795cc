package bounce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// VERP gives each email a return path of its own (variable envelope
// return path): bounces+CONTACT.SEND.MAC@DOMAIN, signed, so that a bounce
// a mail server returns to it says which send it is about, whatever the
// bounce's content says, and nobody can make one up for another send.
type VERP struct {
	domain string
	keys   [][]byte // the current key first, then older ones still accepted
}

// verpLocal is a VERP address's local part: bounces+CONTACT.SEND.MAC.
var verpLocal = regexp.MustCompile(`^bounces\+([1-9][0-9]{0,18})\.([1-9][0-9]{0,18})\.([a-z2-7]{16})$`)

// hostname is a domain name as an address's domain.
var hostname = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)

// NewVERP returns the return paths of domain (its MX must reach Waymark's
// bounce listener), keyed by secret (WAYMARK_SECRET or the stored link
// secret); older secrets keep the return paths of emails sent before a
// rotation valid.
func NewVERP(domain, secret string, older ...string) (*VERP, error) {
	domain = strings.ToLower(strings.TrimSpace(domain))
	if !hostname.MatchString(domain) {
		return nil, fmt.Errorf("%q is not a domain name like bounces.shop.example", domain)
	}
	if secret == "" {
		return nil, errors.New("no secret to sign return paths with")
	}
	v := &VERP{domain: domain}
	for _, s := range append([]string{secret}, older...) {
		// A key for this use only, as the tracking links have theirs.
		m := hmac.New(sha256.New, []byte(s))
		m.Write([]byte("waymark return paths v1"))
		v.keys = append(v.keys, m.Sum(nil))
	}
	return v, nil
}

// Domain is the return paths' domain.
func (v *VERP) Domain() string { return v.domain }

var mac32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func (v *VERP) mac(key []byte, contactID, sendID int64) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%d.%d", contactID, sendID)
	return strings.ToLower(mac32.EncodeToString(m.Sum(nil)[:10]))
}

// ReturnPath is the return path of send sendID of contact contactID.
func (v *VERP) ReturnPath(contactID, sendID int64) string {
	return fmt.Sprintf("bounces+%d.%d.%s@%s", contactID, sendID, v.mac(v.keys[0], contactID, sendID), v.domain)
}

// Parse reads a return path v gave (in any letter case: some servers
// change it); ok is false for any other address, or a forged one.
func (v *VERP) Parse(addr string) (contactID, sendID int64, ok bool) {
	addr = strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")))
	local, domain, found := strings.Cut(addr, "@")
	if !found || domain != v.domain {
		return 0, 0, false
	}
	m := verpLocal.FindStringSubmatch(local)
	if m == nil {
		return 0, 0, false
	}
	c, err1 := strconv.ParseInt(m[1], 10, 64)
	s, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	for _, k := range v.keys {
		if hmac.Equal([]byte(v.mac(k, c, s)), []byte(m[3])) {
			return c, s, true
		}
	}
	return 0, 0, false
}
