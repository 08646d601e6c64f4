package edge

import (
	"path/filepath"

	"github.com/unmap-dev/unmap/control/pki"
	"github.com/unmap-dev/unmap/session/conf"
)

func confTLS(dir string) conf.TLSFiles {
	return conf.TLSFiles{CA: filepath.Join(dir, pki.CAFile), Cert: filepath.Join(dir, pki.EdgeFile), Key: filepath.Join(dir, pki.EdgeKeyFile)}
}

func confRange(first, last uint16) conf.PortRange { return conf.PortRange{First: first, Last: last} }
