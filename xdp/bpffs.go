package xdp

import (
	"errors"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// IsBPFFS reports whether path, or the nearest folder above it that
// exists, is on a bpf filesystem: where pins can be made.
func IsBPFFS(path string) (bool, error) {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		err := unix.Statfs(p, &st)
		if err == nil {
			return st.Type == unix.BPF_FS_MAGIC, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || p == filepath.Dir(p) {
			return false, err
		}
	}
}
