package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

const defaultMaintainer = "unmap maintainers <maintainers@unmap.invalid>"

type options struct {
	out        string // folder for the .deb
	version    string // Debian version; empty: from git describe
	maintainer string
}

// debArch names Go's architectures as Debian does; the package is built
// for the machine that runs this, like the binary in it.
var debArch = map[string]string{
	"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf",
	"riscv64": "riscv64", "ppc64le": "ppc64el", "s390x": "s390x",
	"loong64": "loong64", "mips64le": "mips64el",
}

// The units, as installed (systemd's own folder on a merged-/usr Debian).
const unitDir = "/usr/lib/systemd/system"

// unmap-bpffs.service mounts /sys/fs/bpf where systemd did not (see it).
var units = []string{"unmap-relay.service", "unmap-edge.service", "unmap-edge@.service", "unmap-bpffs.service"}

// build makes the .deb and returns its path.
func build(ctx context.Context, o options) (string, error) {
	arch, ok := debArch[runtime.GOARCH]
	if !ok {
		return "", fmt.Errorf("no Debian name known for GOARCH %s", runtime.GOARCH)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	// A version given by hand needs no git; without one, git describe
	// makes it (version.go).
	src, gitErr := gitSource(ctx, root)
	if o.version != "" {
		if src.version, err = cleanVersion(o.version); err != nil {
			return "", err
		}
	} else if gitErr != nil {
		return "", fmt.Errorf("no -version given and %w", gitErr)
	}
	if src.time.IsZero() {
		src.time = time.Now().UTC().Truncate(time.Second)
	}
	version := src.version

	stage, err := os.MkdirTemp("", "unmap-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	bin := filepath.Join(stage, "unmap")
	if err := goBuild(ctx, root, bin, version, src.revision); err != nil {
		return "", err
	}
	generated, err := generate(ctx, bin, stage, src.time)
	if err != nil {
		return "", err
	}

	contents := files.Contents{
		{Source: bin, Destination: "/usr/bin/unmap", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		// Conffiles: dpkg keeps the operator's edits on upgrade and asks
		// when both sides changed. The examples are commented field by
		// field; /etc/unmap also takes the certificates (unmap cert).
		{Source: filepath.Join(root, "examples", "edge.yaml"), Destination: "/etc/unmap/edge.yaml", Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: filepath.Join(root, "examples", "relay.yaml"), Destination: "/etc/unmap/relay.yaml", Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Destination: "/etc/unmap", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: filepath.Join(root, "README.md"), Destination: "/usr/share/doc/unmap/README.md", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: filepath.Join(root, "OPERATING.md"), Destination: "/usr/share/doc/unmap/OPERATING.md", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		// A relay that is also a CGNAT starts from this one instead of
		// relay.yaml (OPERATING.md, "The relay's CGNAT"): an example,
		// not a conffile, as only one relay config is read.
		{Source: filepath.Join(root, "examples", "relay-cgnat.yaml"), Destination: "/usr/share/doc/unmap/examples/relay-cgnat.yaml", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		// The dashboard of the agents' /metrics, for Grafana to import.
		{Source: filepath.Join(root, "packaging", "grafana", "unmap.json"), Destination: "/usr/share/unmap/grafana/unmap.json", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
	}
	for _, u := range units {
		contents = append(contents, &files.Content{Source: filepath.Join(root, "packaging", "systemd", u), Destination: unitDir + "/" + u, FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	contents = append(contents, generated...)

	scripts := filepath.Join(root, "packaging", "scripts")
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "unmap",
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // already a Debian version: do not read it as semver
		Section:       "net",
		Priority:      "optional",
		Maintainer:    o.maintainer,
		Homepage:      "https://github.com/unmap-dev/unmap",
		Description: `routed IPv6 and public IPv4 for sites behind a carrier-grade NAT
 unmap gives a site stuck behind someone else's IPv4 CGNAT routed IPv6 and a
 public IPv4 from a relay on an Internet server, both ways and at the full
 1500-byte MTU: XDP programs at both ends rewrite headers in place instead
 of adding a tunnel header, per flow, as agreed over a QUIC control channel
 with mutual TLS.
 .
 This package holds the unmap binary, the systemd units of the relay and
 edge agents (not enabled on install), commented configurations in
 /etc/unmap and man pages.`,
		MTime: src.time,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinst"),
				PreRemove:   filepath.Join(scripts, "prerm"),
				PostRemove:  filepath.Join(scripts, "postrm"),
			},
		},
	})
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(o.out, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("pack %s: %w", path, err)
	}
	return path, f.Close()
}

// moduleRoot is the checkout's top folder, wherever in it this runs.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := goCmd(ctx, "", nil, "env", "GOMOD")
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the unmap module: run from its checkout")
	}
	return filepath.Dir(mod), nil
}

// goBuild compiles the one binary: static (no cgo: it runs on any Debian
// of its architecture), with the package version stamped in. Go stamps
// the VCS revision itself even where GOFLAGS says -buildvcs=false, except
// in a git worktree (its .git is a file): there the binary has the
// revision git gave us.
func goBuild(ctx context.Context, root, out, version, revision string) error {
	ldflags := "-s -w -X main.version=" + version
	if revision != "" {
		ldflags += " -X main.revision=" + revision
	}
	_, err := goCmd(ctx, root, []string{"CGO_ENABLED=0"},
		"build", "-trimpath", "-buildvcs=auto", "-ldflags", ldflags,
		"-o", out, "./cmd/unmap")
	return err
}

// generate has the built binary write what is made from its command tree:
// man pages (gzipped, as Debian installs them) and shell completions.
// The pages are dated by the commit when Go did not stamp its time.
func generate(ctx context.Context, bin, stage string, commit time.Time) (files.Contents, error) {
	man := filepath.Join(stage, "man")
	gen := exec.CommandContext(ctx, bin, "man", "--dir", man)
	gen.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", commit.Unix()))
	if out, err := gen.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unmap man: %v: %s", err, out)
	}
	pages, err := filepath.Glob(filepath.Join(man, "*.8"))
	if err != nil || len(pages) == 0 {
		return nil, fmt.Errorf("unmap man wrote no pages in %s", man)
	}
	sort.Strings(pages)
	var c files.Contents
	for _, p := range pages {
		gz, err := gzipFile(p)
		if err != nil {
			return nil, err
		}
		c = append(c, &files.Content{Source: gz, Destination: "/usr/share/man/man8/" + filepath.Base(gz), FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	for _, sh := range []struct{ shell, dst string }{
		{"bash", "/usr/share/bash-completion/completions/unmap"},
		{"zsh", "/usr/share/zsh/vendor-completions/_unmap"},
		{"fish", "/usr/share/fish/vendor_completions.d/unmap.fish"},
	} {
		out, err := exec.CommandContext(ctx, bin, "completion", sh.shell).Output()
		if err != nil {
			return nil, fmt.Errorf("unmap completion %s: %w", sh.shell, err)
		}
		p := filepath.Join(stage, "completion."+sh.shell)
		if err := os.WriteFile(p, out, 0o644); err != nil {
			return nil, err
		}
		c = append(c, &files.Content{Source: p, Destination: sh.dst, FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	return c, nil
}

// gzipFile writes p.gz with no name or time in its header (gzip -9n).
func gzipFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(b); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return p + ".gz", os.WriteFile(p+".gz", buf.Bytes(), 0o644)
}

// goCmd runs the go command that runs this program: go run and go test
// put its folder first in PATH.
func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("no go command in PATH (run this with go run ./packaging): %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
