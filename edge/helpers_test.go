package edge

import (
	"path/filepath"

	"github.com/unmap-dev/unmap/config"
	"github.com/unmap-dev/unmap/control/pki"
)

func confTLS(dir string) config.TLSFiles {
	return config.TLSFiles{CA: filepath.Join(dir, pki.CAFile), Cert: filepath.Join(dir, pki.EdgeFile), Key: filepath.Join(dir, pki.EdgeKeyFile)}
}

func confRange(first, last uint16) config.PortRange {
	return config.PortRange{First: first, Last: last}
}
