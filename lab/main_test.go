package lab

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// rootNS is the network namespace the test binary started in, read before
// any lab exists: every thread must still be there when a test ends.
var rootNS uint64

func TestMain(m *testing.M) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		fmt.Fprintln(os.Stderr, "lab tests:", err)
		os.Exit(2)
	}
	rootNS = st.Ino
	// The package keeps one fd on the home namespace for good; open it
	// now so that tests counting file descriptors do not count it.
	if _, err := homeNS(); err != nil {
		fmt.Fprintln(os.Stderr, "lab tests:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// assertThreadsHome fails t if any thread of the process, the main one
// included, is in another network namespace than the one it started in.
func assertThreadsHome(t *testing.T) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err != nil {
			continue // the thread ended meanwhile
		}
		if st.Ino != rootNS {
			t.Errorf("thread %s is in namespace %d, not the test's %d", task.Name(), st.Ino, rootNS)
		}
	}
}
