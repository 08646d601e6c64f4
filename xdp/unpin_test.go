package xdp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/unmap-dev/unmap/test/bpffs"
)

// TestUnpinRemovesOnlyPinFolders: Unpin is a recursive delete driven by
// a config field. It refuses a relative path, an ordinary folder, a link
// to a pin folder and the bpffs mount itself, leaving each as it was,
// and removes a folder inside a bpffs mount (or nothing, if it is gone).
func TestUnpinRemovesOnlyPinFolders(t *testing.T) {
	mnt := bpffs.ForTest(t)
	pins := filepath.Join(mnt, "unmap", "edge-home")
	if err := os.MkdirAll(pins, 0o700); err != nil {
		t.Fatal(err)
	}

	plain := t.TempDir()
	keep := filepath.Join(plain, "precious")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(plain, "pins")
	if err := os.Symlink(pins, link); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(plain); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })

	for name, dir := range map[string]string{
		"relative":        "precious",
		"ordinary folder": plain,
		"link to pins":    link,
		"bpffs mount":     mnt,
	} {
		if err := Unpin(dir); err == nil {
			t.Errorf("%s (%s): removed", name, dir)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the ordinary folder's file: %v", err)
	}
	if _, err := os.Stat(pins); err != nil {
		t.Fatalf("the pin folder went with a refused call: %v", err)
	}

	if err := Unpin(pins); err != nil {
		t.Fatalf("unpin of a pin folder: %v", err)
	}
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		t.Errorf("pin folder still there: %v", err)
	}
	if err := Unpin(pins); err != nil {
		t.Errorf("unpin of a pin folder already gone: %v", err)
	}
}
