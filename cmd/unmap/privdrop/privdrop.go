// Package privdrop lowers an agent's privileges once its set-up is done.
//
// The agents need root-like powers to start (load and attach XDP, pin
// maps, open raw sockets, write sysctls, install routes) and far fewer
// afterwards, while they parse what the Internet and the LAN send them.
// Drop keeps only the capabilities an agent still uses, empties the
// bounding set, sets no_new_privs and optionally becomes another user.
//
// Linux keeps capabilities per thread, and a Go program runs on many
// threads the runtime starts and reuses at will: a capset on one thread
// leaves the others privileged. libcap's cap package makes every change
// on all threads at once (through its psx package: with cgo, a signal to
// each thread; without, syscall.AllThreadsSyscall), and Drop reads each
// thread's status back to prove it.
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// Plan is what an agent keeps.
type Plan struct {
	// Keep are the capabilities the agent still uses after its set-up;
	// they stay permitted and effective, every other one goes from every
	// set, the bounding set included.
	Keep []cap.Value
	// User, when set, is the user (a name or a numeric uid) the agent
	// becomes; it keeps Keep across the change. Its primary group becomes
	// the agent's only group.
	User string
	// Dirs are folders the agent still creates files in after the drop
	// (the status socket's): made if missing and, with User, handed to
	// that user, who could not write a root-owned folder otherwise.
	Dirs []string
}

// Result says what Drop did.
type Result struct {
	Kept     string // the capabilities kept, as "cap_bpf,cap_net_admin"
	UID, GID int    // the agent's ids afterwards
	// BoundingKept is set when the process could not empty its bounding
	// set (no CAP_SETPCAP: a service manager already bounded it); no_new_privs
	// still stops any exec from gaining capabilities.
	BoundingKept bool
}

// Drop applies p to the whole process, every thread. On error the process
// may be half-way: the caller must exit.
func Drop(p Plan) (Result, error) {
	var res Result
	start := cap.GetProc()
	for _, v := range p.Keep {
		if ok, err := start.GetFlag(cap.Permitted, v); err != nil || !ok {
			return res, fmt.Errorf("drop privileges: %s is not permitted, but the agent needs it after start", v)
		}
	}
	uid, gid := os.Getuid(), os.Getgid()
	if p.User != "" {
		var err error
		if uid, gid, err = LookupUser(p.User); err != nil {
			return res, err
		}
	}
	for _, d := range p.Dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return res, fmt.Errorf("drop privileges: %w", err)
		}
		if p.User != "" {
			if err := os.Chown(d, uid, gid); err != nil {
				return res, fmt.Errorf("drop privileges: %w", err)
			}
		}
	}
	if p.User != "" {
		// SetGroups and SetUID raise CAP_SETGID and CAP_SETUID for the
		// call and keep the permitted set across the uid change
		// (PR_SET_KEEPCAPS): the capabilities are dropped below, by name,
		// not by the kernel's all-or-nothing root fix-up.
		if err := cap.SetGroups(gid); err != nil {
			return res, fmt.Errorf("drop privileges: group %d: %w", gid, err)
		}
		if err := cap.SetUID(uid); err != nil {
			return res, fmt.Errorf("drop privileges: user %d: %w", uid, err)
		}
	}
	if err := dropBounding(p.Keep, &res); err != nil {
		return res, err
	}
	kept := cap.NewSet()
	if err := errors.Join(kept.SetFlag(cap.Permitted, true, p.Keep...), kept.SetFlag(cap.Effective, true, p.Keep...)); err != nil {
		return res, fmt.Errorf("drop privileges: %w", err)
	}
	// Inheritable empty: the ambient set empties with it.
	if err := kept.SetProc(); err != nil {
		return res, fmt.Errorf("drop privileges: capset: %w", err)
	}
	if _, err := cap.Prctlw(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		return res, fmt.Errorf("drop privileges: no_new_privs: %w", err)
	}
	res.UID, res.GID = uid, gid
	res.Kept = Names(p.Keep)
	return res, Check(p.Keep, !res.BoundingKept)
}

// dropBounding empties the bounding set of all but keep. Dropping needs
// CAP_SETPCAP, raised for the calls; without it the set stays as the
// service manager left it.
func dropBounding(keep []cap.Value, res *Result) error {
	if ok, _ := cap.GetProc().GetFlag(cap.Permitted, cap.SETPCAP); !ok {
		res.BoundingKept = true
		return nil
	}
	w := cap.GetProc()
	if err := w.SetFlag(cap.Effective, true, cap.SETPCAP); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	if err := w.SetProc(); err != nil {
		return fmt.Errorf("drop privileges: raise CAP_SETPCAP: %w", err)
	}
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		if has(keep, v) {
			continue
		}
		if in, err := cap.GetBound(v); err != nil || !in {
			continue
		}
		if err := cap.DropBound(v); err != nil {
			return fmt.Errorf("drop privileges: bounding set %s: %w", v, err)
		}
	}
	return nil
}

// Check reads every thread's capabilities back from /proc and fails
// unless each has exactly keep permitted and effective, nothing
// inheritable or ambient, and (with bounding) keep as its bounding set,
// and no_new_privs.
func Check(keep []cap.Value, bounding bool) error {
	want := mask(keep)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("drop privileges: check: %w", err)
	}
	for _, t := range tasks {
		st, err := ReadStatus("/proc/self/task/" + t.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		bad := st.Eff != want || st.Prm != want || st.Inh != 0 || st.Amb != 0 || !st.NoNewPrivs
		if bounding && st.Bnd != want {
			bad = true
		}
		if bad {
			return fmt.Errorf("drop privileges: thread %s still has CapEff=%016x CapPrm=%016x CapInh=%016x CapBnd=%016x CapAmb=%016x NoNewPrivs=%v, want %016x",
				t.Name(), st.Eff, st.Prm, st.Inh, st.Bnd, st.Amb, st.NoNewPrivs, want)
		}
	}
	return nil
}

// Status is the capability part of a /proc/<pid>/status.
type Status struct {
	Inh, Prm, Eff, Bnd, Amb uint64
	NoNewPrivs              bool
	UID, GID                int // effective
}

// ReadStatus parses the capability lines of a /proc status file.
func ReadStatus(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	var st Status
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		hex := func(dst *uint64) { *dst, err = strconv.ParseUint(v, 16, 64) }
		switch k {
		case "CapInh":
			hex(&st.Inh)
		case "CapPrm":
			hex(&st.Prm)
		case "CapEff":
			hex(&st.Eff)
		case "CapBnd":
			hex(&st.Bnd)
		case "CapAmb":
			hex(&st.Amb)
		case "NoNewPrivs":
			st.NoNewPrivs = v == "1"
		case "Uid", "Gid":
			f := strings.Fields(v)
			if len(f) > 1 {
				id, _ := strconv.Atoi(f[1])
				if k == "Uid" {
					st.UID = id
				} else {
					st.GID = id
				}
			}
		}
		if err != nil {
			return st, fmt.Errorf("%s: %s: %w", path, k, err)
		}
	}
	return st, nil
}

// Mask is keep as the bit mask /proc prints.
func Mask(keep []cap.Value) uint64 { return mask(keep) }

func mask(keep []cap.Value) uint64 {
	var m uint64
	for _, v := range keep {
		m |= 1 << uint(v)
	}
	return m
}

func has(vs []cap.Value, v cap.Value) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Names is keep as the comma-separated names operators know
// (cap_bpf,cap_net_admin), or "none".
func Names(keep []cap.Value) string {
	if len(keep) == 0 {
		return "none"
	}
	s := make([]string, len(keep))
	for i, v := range keep {
		s[i] = v.String()
	}
	return strings.Join(s, ",")
}

// LookupUser resolves a user name or numeric uid to its uid and primary
// gid; a uid with no passwd entry keeps its number as its group.
func LookupUser(name string) (uid, gid int, err error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		if u, err := user.LookupId(name); err == nil {
			gid, _ = strconv.Atoi(u.Gid)
			return n, gid, nil
		}
		return n, n, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: %w", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// What each agent keeps after its set-up (OPERATING.md, "Privileges and
// kernel settings" says the same for operators).
var (
	// Relay keeps CAP_BPF only: the flow table's updates, the reason and
	// activity counters and the pinned maps' reads are bpf() calls on
	// maps it already holds, which kernels before 6.5 refuse to a
	// process without CAP_BPF when unprivileged BPF is disabled (the
	// default of most distributions). Its raw sockets, control socket,
	// routes and sysctls are all made before the drop, and nothing it
	// does later changes the network's configuration.
	Relay = []cap.Value{cap.BPF}
	// Edge keeps CAP_BPF for the same reason, and CAP_NET_ADMIN and
	// CAP_NET_RAW because it serves its LAN only once the relay grants a
	// prefix, on every (re)connection: it puts the gateway address on
	// the LAN interface over netlink (CAP_NET_ADMIN) and opens the
	// router advertisements' ICMPv6 socket (CAP_NET_RAW).
	Edge = []cap.Value{cap.BPF, cap.NET_ADMIN, cap.NET_RAW}
)
