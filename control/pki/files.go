package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// File names `unmap cert` writes; the example configs use them.
const (
	CAFile       = "ca.pem"
	CAKeyFile    = "ca-key.pem"
	RelayFile    = "relay.pem"
	RelayKeyFile = "relay-key.pem"
	EdgeFile     = "edge.pem"
	EdgeKeyFile  = "edge-key.pem"
)

// maxPEMFile bounds what the loaders read: a certificate chain or key is
// a few kilobytes, so anything larger is the wrong file.
const maxPEMFile = 1 << 20

// ErrExists is returned (wrapped, naming the file) when a file is in the
// way and overwriting was not asked for.
var ErrExists = errors.New("already exists (use --force to overwrite)")

// CertPEM is cert in PEM.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// KeyPEM is key as PKCS #8 in PEM.
func KeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Save writes id's certificate (mode 0644) and key (mode 0600) into dir
// under the two names. Unless force, it refuses, before writing anything,
// when either file exists.
func (id *Identity) Save(dir, certName, keyName string, force bool) error {
	k, err := KeyPEM(id.Key)
	if err != nil {
		return err
	}
	return writeFiles(dir, force, []file{
		{certName, CertPEM(id.Cert), 0o644},
		{keyName, k, 0o600},
	})
}

// SaveCA writes ca.pem and ca-key.pem into dir.
func (ca *CA) SaveCA(dir string, force bool) error {
	return ca.Save(dir, CAFile, CAKeyFile, force)
}

// SaveCert writes the CA certificate alone as dir/ca.pem, for a relay or
// edge to verify its peer. A file there with the same content is left
// as it is, so issuing into the CA's own folder works.
func (ca *CA) SaveCert(dir string, force bool) error {
	return writeFiles(dir, force, ca.certFile(dir))
}

// SaveBundle writes id's certificate and key and ca's certificate
// (ca.pem) into dir: all of them, or, when one is in the way and not
// force, none.
func (id *Identity) SaveBundle(dir, certName, keyName string, ca *CA, force bool) error {
	k, err := KeyPEM(id.Key)
	if err != nil {
		return err
	}
	return writeFiles(dir, force, append([]file{
		{certName, CertPEM(id.Cert), 0o644},
		{keyName, k, 0o600},
	}, ca.certFile(dir)...))
}

// certFile is ca.pem to write into dir, or nothing when dir already holds
// the same bytes.
func (ca *CA) certFile(dir string) []file {
	want := CertPEM(ca.Cert)
	if have, err := os.ReadFile(filepath.Join(dir, CAFile)); err == nil && bytes.Equal(have, want) {
		return nil
	}
	return []file{{CAFile, want, 0o644}}
}

type file struct {
	name string
	data []byte
	mode fs.FileMode
}

// writeFiles writes all files or, when one is in the way, none. Each is
// written to a temporary file in dir and then linked (or, with force,
// renamed) into place, so a reader never sees half a key and a key is
// never readable by others, even for a moment.
func writeFiles(dir string, force bool, files []file) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !force {
		for _, f := range files {
			p := filepath.Join(dir, f.name)
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s: %w", p, ErrExists)
			}
		}
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.mode, force); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, data []byte, mode fs.FileMode, force bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // a no-op once linked/renamed away
	// CreateTemp makes 0600 files; Chmod sets the mode exactly, whatever
	// the umask.
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if force {
		err = os.Rename(name, path)
	} else if err = os.Link(name, path); errors.Is(err, fs.ErrExist) {
		// Someone else made it since writeFiles looked.
		return fmt.Errorf("%s: %w", path, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// openRegular opens path for reading if it is a regular file. A FIFO,
// socket or device named by mistake would hang the agent's start-up (an
// open of a FIFO waits for a writer, and a read of one for data), so
// anything else is refused before it is opened; the open itself does not
// wait (O_NONBLOCK), in case the file was swapped meanwhile, and the
// opened file is checked again.
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s: not a regular file", path)
		}
		return nil, nil, err
	}
	return f, fi, nil
}

// readPEM reads path and returns its PEM blocks of one of types, and
// the file's mode.
func readPEM(path string, types ...string) ([]*pem.Block, fs.FileMode, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxPEMFile {
		return nil, 0, fmt.Errorf("%s: larger than %d bytes, not a PEM file", path, maxPEMFile)
	}
	var blocks []*pem.Block
	var others []string
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if slices.Contains(types, b.Type) {
			blocks = append(blocks, b)
		} else if !slices.Contains(others, b.Type) {
			others = append(others, b.Type)
		}
	}
	if len(blocks) == 0 {
		return nil, 0, fmt.Errorf("%s: no %s block: %s", path, strings.Join(types, " or "), describeBlocks(data, others))
	}
	return blocks, fi.Mode(), nil
}

// describeBlocks says what a PEM file holds instead of what was looked
// for, so that the usual mistakes (the certificate given as the key, an
// encrypted or RSA key, an empty file) are named.
func describeBlocks(data []byte, others []string) string {
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return "the file is empty"
	case len(others) == 0:
		return "no PEM block at all (not a PEM file)"
	case slices.Contains(others, "ENCRYPTED PRIVATE KEY"):
		return "the key is encrypted; give it unencrypted, mode 0600 (openssl pkcs8 -in key.pem -out key-plain.pem)"
	case slices.Contains(others, "RSA PRIVATE KEY"):
		return "it holds an RSA key; unmap's keys are ECDSA P-256 (`unmap cert` makes them)"
	case slices.Contains(others, "CERTIFICATE"):
		return "it holds " + strings.Join(others, ", ") + " (is this the certificate file where the key was meant, or the other way round?)"
	}
	return "it holds " + strings.Join(others, ", ")
}

// LoadCerts reads every certificate in a PEM file.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	blocks, _, err := readPEM(path, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, b := range blocks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// ErrKeyMode is returned (wrapped, naming the file) for a private key
// that others than its owner may read or write. Refused rather than
// warned about: a key readable by another account is a key that may
// already be copied, and the fix is one chmod.
var ErrKeyMode = errors.New("a private key must be readable by its owner only")

// LoadKey reads an ECDSA private key (PKCS #8 or SEC 1) from a PEM file
// that only its owner may read (mode 0600 or 0400).
func LoadKey(path string) (*ecdsa.PrivateKey, error) {
	blocks, mode, err := readPEM(path, "PRIVATE KEY", "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	if mode.Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets group or others read it: %w (chmod 600 %s)", path, mode.Perm(), ErrKeyMode, path)
	}
	b := blocks[0]
	if b.Type == "EC PRIVATE KEY" {
		k, err := x509.ParseECPrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T key; unmap's keys are ECDSA P-256", path, k)
	}
	return ek, nil
}

// LoadIdentity reads a certificate (the first in certPath; any more are
// sent as its chain) and its key, and checks that they belong together.
func LoadIdentity(certPath, keyPath string) (*Identity, tls.Certificate, error) {
	certs, err := LoadCerts(certPath)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	key, err := LoadKey(keyPath)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, tls.Certificate{}, fmt.Errorf("%s does not hold the key of %s", keyPath, certPath)
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return &Identity{certs[0], key}, tc, nil
}

// LoadCA reads dir/ca.pem and dir/ca-key.pem.
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CAFile)
	id, _, err := LoadIdentity(certPath, filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	if !id.Cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	return &CA{*id}, nil
}

// LoadPool reads the CA certificates a peer must chain to.
func LoadPool(path string) (*x509.CertPool, error) {
	certs, err := LoadCerts(path)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%s: %q is not a CA certificate", path, c.Subject.CommonName)
		}
		p.AddCert(c)
	}
	return p, nil
}
