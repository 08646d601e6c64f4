package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PinsDir holds a record of each bpf filesystem MountPins mounted: the
// mounting process's id and the mount point. A test binary killed by its
// timeout runs no cleanup and leaves its mount behind, in a temporary
// directory nobody looks at; Down unmounts the ones whose process died.
const PinsDir = OwnerDir + "/bpffs"

// MountPins mounts a bpf filesystem of its own at dir (made if need be)
// for an agent's pin_path: bpffs mounts are separate instances, so
// parallel labs never share pins. UnmountPins undoes it.
func MountPins(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(PinsDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount a bpffs for an agent's pins at %s: %w", dir, err)
	}
	rec := fmt.Sprintf("%d\n%s\n", os.Getpid(), dir)
	if err := os.WriteFile(pinsRecord(dir), []byte(rec), 0o644); err != nil {
		return errors.Join(err, unix.Unmount(dir, unix.MNT_DETACH))
	}
	return nil
}

// UnmountPins unmounts what MountPins mounted.
func UnmountPins(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	if err := os.Remove(pinsRecord(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pinsRecord is where the record of a mount at dir is kept.
func pinsRecord(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(PinsDir, hex.EncodeToString(sum[:8]))
}

// reapPins unmounts the bpf filesystems MountPins left whose process
// died, or all of them, and returns their mount points. A record whose
// mount is gone already is just removed.
func reapPins(all bool) (unmounted []string, err error) {
	ents, err := os.ReadDir(PinsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range ents {
		path := filepath.Join(PinsDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		pidText, dir, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		pid, _ := strconv.Atoi(pidText)
		if !all && pid > 0 && alive(pid) {
			continue
		}
		switch err := unix.Unmount(dir, unix.MNT_DETACH); {
		case err == nil:
			unmounted = append(unmounted, dir)
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// not mounted any more: only the record is left
		default:
			errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
			continue
		}
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	return unmounted, errors.Join(errs...)
}
