package pki

import (
	"crypto/x509"
	"syscall"
)

func umask(m int) int { return syscall.Umask(m) }

func x509VerifyServer(pool *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
}
