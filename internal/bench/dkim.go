package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// DKIMKeyFile writes a fresh DKIM private key (kind rsa: 2048-bit RSA,
// PKCS#1; ed25519: PKCS#8) to a temporary file and returns its path.
func DKIMKeyFile(kind string) (string, error) {
	var block *pem.Block
	switch kind {
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", err
		}
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", err
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	default:
		return "", fmt.Errorf("%q: want rsa or ed25519", kind)
	}
	f, err := os.CreateTemp("", "waymark-bench-dkim-*.pem")
	if err != nil {
		return "", err
	}
	if err := pem.Encode(f, block); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}
