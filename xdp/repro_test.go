package xdp

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/unmap-dev/unmap/test/priv"
)

// TestGenerateReproducible regenerates the BPF objects from a copy of the
// module at another path and requires byte-identical output, as CI does
// with `go generate ./xdp/... && git diff --exit-code` on a fresh clone.
func TestGenerateReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerates with clang; skipped in -short")
	}
	// go generate runs clang and llvm-strip on libbpf's headers.
	priv.Tool(t, "clang", "clang llvm libbpf-dev")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "elsewhere", "unmap")
	for _, f := range []string{"go.mod", "go.sum"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(dst, f))
	}
	if err := os.CopyFS(filepath.Join(dst, "xdp"), os.DirFS(filepath.Join(root, "xdp"))); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "generate", "./xdp/")
	cmd.Dir = dst
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go generate at %s: %v\n%s", dst, err, out)
	}
	for _, f := range []string{"datapath_bpfel.o", "datapath_bpfel.go", "lookups_bpfel_test.o", "lookups_bpfel_test.go"} {
		want, err := os.ReadFile(filepath.Join(root, "xdp", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dst, "xdp", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs when generated at %s: committed file stale or output path-dependent", f, dst)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
