package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"

	"github.com/unmap-dev/unmap/test/priv"
)

// A drop is for the rest of a process's life: each case runs in a child
// process (this test binary again) and reports on its standard output.
const childEnv = "UNMAP_PRIVDROP_CHILD"

func TestMain(m *testing.M) {
	if c := os.Getenv(childEnv); c != "" {
		if err := child(c); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(t *testing.T, name string, env ...string) string {
	t.Helper()
	priv.Require(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"="+name), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("child %s: %v\n%s", name, err, out)
	}
	return string(out)
}

// TestDropEveryThread drops to two capabilities while many OS threads
// exist (goroutines locked to their threads, as the runtime may have
// for any agent), and checks on each of them that the kept capabilities
// still work, a dropped one does not, and /proc shows exactly the kept
// set as effective, permitted and bounding, with no_new_privs.
func TestDropEveryThread(t *testing.T) { runChild(t, "threads") }

// TestDropToUser becomes nobody keeping CAP_NET_RAW: a raw socket still
// opens, the uid changed, and the status folder was handed over.
func TestDropToUser(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	runChild(t, "user", "UNMAP_PRIVDROP_DIR="+dir)
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := int(st.Sys().(*syscall.Stat_t).Uid); uid != nobody(t) {
		t.Errorf("%s is owned by %d, want nobody", dir, uid)
	}
}

func nobody(t *testing.T) int {
	uid, _, err := LookupUser("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	return uid
}

// TestDropRefusesMissing: a plan keeping a capability the process does
// not have fails rather than run without it.
func TestDropRefusesMissing(t *testing.T) { runChild(t, "missing") }

func child(name string) error {
	switch name {
	case "threads":
		return childThreads()
	case "user":
		keep := []cap.Value{cap.NET_RAW}
		res, err := Drop(Plan{Keep: keep, User: "nobody", Dirs: []string{os.Getenv("UNMAP_PRIVDROP_DIR")}})
		if err != nil {
			return err
		}
		if os.Getuid() != res.UID || os.Geteuid() != res.UID || res.UID == 0 {
			return fmt.Errorf("uid %d euid %d, want %d", os.Getuid(), os.Geteuid(), res.UID)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket as %d with CAP_NET_RAW kept: %w", res.UID, err)
		}
		unix.Close(fd)
		return nil
	case "missing":
		s := cap.GetProc()
		if err := errors.Join(s.SetFlag(cap.Permitted, false, cap.NET_RAW), s.SetFlag(cap.Effective, false, cap.NET_RAW)); err != nil {
			return err
		}
		if err := s.SetProc(); err != nil {
			return err
		}
		if _, err := Drop(Plan{Keep: []cap.Value{cap.NET_RAW}}); err == nil {
			return errors.New("Drop kept a capability the process did not have")
		}
		return nil
	}
	return fmt.Errorf("no child %q", name)
}

func childThreads() error {
	const threads = 16
	keep := []cap.Value{cap.NET_RAW, cap.BPF}
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, threads)
	ready.Add(threads)
	done.Add(threads)
	f, err := os.CreateTemp("", "privdrop")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	f.Close()
	for range threads {
		go func() {
			defer done.Done()
			// Each goroutine holds its own OS thread, made before the drop.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-start
			tid := unix.Gettid()
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				errs <- fmt.Errorf("thread %d: raw socket with CAP_NET_RAW kept: %w", tid, err)
				return
			}
			unix.Close(fd)
			if err := unix.Chown(f.Name(), 12345, 12345); !errors.Is(err, unix.EPERM) {
				errs <- fmt.Errorf("thread %d: chown after CAP_CHOWN was dropped: %v, want EPERM", tid, err)
			}
		}()
	}
	ready.Wait()
	if _, err := Drop(Plan{Keep: keep}); err != nil {
		return err
	}
	close(start)
	done.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	st, err := ReadStatus("/proc/self/status")
	if err != nil {
		return err
	}
	if want := Mask(keep); st.Eff != want || st.Bnd != want || st.Prm != want || !st.NoNewPrivs {
		return fmt.Errorf("status %+v, want %x everywhere and no_new_privs", st, want)
	}
	return nil
}
