package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the release or package version, set when a package is built
// (go run ./packaging passes -ldflags "-X main.version=…", the same string
// the .deb carries). A plain go build leaves it empty and the binary
// reports what Go stamped into it from the module and the VCS.
var version = ""

// revision is the commit the packaging built from, for when Go could not
// stamp it (a git worktree, whose .git is a file, gets no VCS stamp).
var revision = ""

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary: package version, module version, VCS revision, Go",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			info, _ := debug.ReadBuildInfo()
			writeVersion(cmd.OutOrStdout(), version, revision, info)
		},
	}
}

// buildVersion is the one-word version the agents report in their status
// and control handshake.
func buildVersion() string {
	info, _ := debug.ReadBuildInfo()
	return shortVersion(version, info)
}

// buildFacts are what Go stamps into a binary built from a checkout
// (go build -buildvcs=auto, the default unless GOFLAGS turns it off).
type buildFacts struct {
	module   string // module path and version: (devel), or v0.0.0-<time>-<rev>[+dirty] from Go 1.24 on
	revision string // full VCS revision
	time     string // commit time, RFC 3339
	modified bool   // the checkout had uncommitted changes
	goVer    string
	platform string
}

func readFacts(info *debug.BuildInfo) buildFacts {
	var f buildFacts
	if info == nil {
		return f
	}
	f.module = info.Main.Path + " " + info.Main.Version
	f.goVer = info.GoVersion
	var goos, goarch string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			f.revision = s.Value
		case "vcs.time":
			f.time = s.Value
		case "vcs.modified":
			f.modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" {
		f.platform = goos + "/" + goarch
	}
	return f
}

func shortVersion(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "(unknown)"
	}
	f := readFacts(info)
	if f.revision == "" {
		return info.Main.Version
	}
	rev := f.revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if f.modified {
		rev += "-dirty"
	}
	return "devel " + rev
}

// writeVersion prints the version line the agents report, then where the
// binary comes from, so a bug report can name the exact source.
func writeVersion(w io.Writer, stamped, packagedRev string, info *debug.BuildInfo) {
	fmt.Fprintln(w, "unmap", shortVersion(stamped, info))
	if info == nil {
		fmt.Fprintln(w, "no build information in this binary")
		return
	}
	f := readFacts(info)
	fmt.Fprintln(w, "module  ", f.module)
	switch {
	case f.revision == "" && packagedRev != "":
		fmt.Fprintf(w, "revision %s (given by the packaging: Go stamped none)\n", packagedRev)
	case f.revision == "":
		fmt.Fprintln(w, "revision (not stamped: built outside a checkout, or with -buildvcs=false)")
	case f.modified:
		fmt.Fprintf(w, "revision %s (%s) with uncommitted changes\n", f.revision, f.time)
	default:
		fmt.Fprintf(w, "revision %s (%s)\n", f.revision, f.time)
	}
	fmt.Fprintln(w, "go      ", f.goVer, f.platform)
}
