package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// NamePrefix starts the name of every lab namespace.
const NamePrefix = "unmap-"

// OwnerDir holds one file per lab, named by its prefix and holding the
// process id that built it (or "kept" once `unmap lab --keep` released
// it), so that Down can tell a leftover from a lab in use by a running
// test.
const OwnerDir = "/run/unmap-lab"

// labName matches a lab namespace and captures its prefix.
var labName = regexp.MustCompile(`^(` + NamePrefix + `[0-9a-f]{6})-[a-z0-9]+$`)

const keptMark = "kept"

// writeOwner creates the owner file of a new lab; it fails with
// os.ErrExist when the prefix is taken.
func writeOwner(prefix string) error {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(OwnerDir, prefix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, os.Getpid())
	return errors.Join(err, f.Close())
}

func removeOwner(prefix string) error {
	err := os.Remove(filepath.Join(OwnerDir, prefix))
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Release marks the lab as no longer owned by this process, so that Down
// removes it without all: what `unmap lab --keep` does before it exits.
func (l *Lab) Release() error {
	return os.WriteFile(filepath.Join(OwnerDir, l.Prefix), []byte(keptMark+"\n"), 0o644)
}

// Ownership says who holds a lab.
type Ownership int

const (
	Unowned  Ownership = iota // no owner file (built by an older tool, or half torn down)
	Kept                      // released by `unmap lab --keep`
	InUse                     // its building process is alive
	Orphaned                  // its building process died without tearing it down
)

func (o Ownership) String() string {
	return [...]string{"unowned", "kept", "in use", "orphaned"}[o]
}

// ownerOf reads a lab's owner file.
func ownerOf(prefix string) (Ownership, int) {
	b, err := os.ReadFile(filepath.Join(OwnerDir, prefix))
	if err != nil {
		return Unowned, 0
	}
	s := strings.TrimSpace(string(b))
	if s == keptMark {
		return Kept, 0
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return Unowned, 0
	}
	if !alive(pid) {
		return Orphaned, pid
	}
	return InUse, pid
}

// alive reports whether process pid exists. Signal 0 tests for
// existence; EPERM means it exists as someone else's. (A process in
// another pid namespace looks dead from here.)
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Leftover is a lab found under NetnsDir.
type Leftover struct {
	Prefix     string
	Namespaces []string // full names
	Ownership  Ownership
	Owner      int // pid of the process that built it, if known
}

// Leftovers lists the labs under NetnsDir, sorted by prefix.
func Leftovers() ([]Leftover, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byPrefix := map[string]*Leftover{}
	for _, e := range ents {
		m := labName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		lo, ok := byPrefix[m[1]]
		if !ok {
			lo = &Leftover{Prefix: m[1]}
			lo.Ownership, lo.Owner = ownerOf(m[1])
			byPrefix[m[1]] = lo
		}
		lo.Namespaces = append(lo.Namespaces, e.Name())
	}
	res := make([]Leftover, 0, len(byPrefix))
	for _, lo := range byPrefix {
		res = append(res, *lo)
	}
	slices.SortFunc(res, func(a, b Leftover) int { return strings.Compare(a.Prefix, b.Prefix) })
	return res, nil
}

// Down removes leftover labs: every namespace named unmap-<6 hex>-<role>,
// and the bpf filesystems mounted for their edges' pins ("bpffs <path>"
// in removed). A lab whose building process is still alive is in use (a
// running test) and is kept unless all is set. It returns what it
// removed and what it kept.
func Down(all bool, prefixes ...string) (removed []string, kept []Leftover, err error) {
	removed, kept, err = remove(downSelects(all, prefixes))
	pins, perr := reapPins(all)
	for _, dir := range pins {
		removed = append(removed, "bpffs "+dir)
	}
	return removed, kept, errors.Join(err, perr)
}

// downSelects is Down's choice of what to remove: labs not in use (all:
// any), among prefixes when some are given.
func downSelects(all bool, prefixes []string) func(Leftover) bool {
	return func(lo Leftover) bool {
		if len(prefixes) > 0 && !slices.Contains(prefixes, lo.Prefix) {
			return false
		}
		return all || lo.Ownership != InUse
	}
}

// reapOrphans removes labs whose building process died (a test binary
// killed by its timeout runs no cleanup), so that a crashed run does not
// pile up namespaces. A kept lab is left for its user.
func reapOrphans() error {
	_, _, err := remove(func(lo Leftover) bool { return lo.Ownership == Orphaned })
	_, perr := reapPins(false)
	return errors.Join(err, perr)
}

// lockLabs takes the lock every removal of other processes' labs holds
// (Down, the orphan reaper): go test runs packages' binaries at once,
// and one building a lab must not reap a lab another is reading the
// ownership of. The returned function releases it.
func lockLabs() (func(), error) {
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(OwnerDir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the file drops the lock
}

// lockName is the lock file in OwnerDir; not a lab's owner file.
const lockName = ".lock"

func remove(which func(Leftover) bool) (removed []string, kept []Leftover, err error) {
	unlock, err := lockLabs()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	los, err := Leftovers()
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, lo := range los {
		if !which(lo) {
			kept = append(kept, lo)
			continue
		}
		for _, name := range lo.Namespaces {
			if err := deleteNamed(name); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, name)
		}
		if err := removeOwner(lo.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("owner file of %s: %w", lo.Prefix, err))
		}
	}
	// Owner files without namespaces: a process that died between
	// claiming its prefix and building, or tearing down.
	ents, _ := os.ReadDir(OwnerDir)
	for _, e := range ents {
		if e.IsDir() || e.Name() == lockName {
			continue // PinsDir, the lock
		}
		prefix := e.Name()
		if slices.ContainsFunc(los, func(lo Leftover) bool { return lo.Prefix == prefix }) {
			continue
		}
		lo := Leftover{Prefix: prefix}
		lo.Ownership, lo.Owner = ownerOf(prefix)
		if lo.Ownership != InUse && which(lo) {
			if err := removeOwner(prefix); err != nil {
				errs = append(errs, fmt.Errorf("owner file of %s: %w", prefix, err))
			}
		}
	}
	return removed, kept, errors.Join(errs...)
}
