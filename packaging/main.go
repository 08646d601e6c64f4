// Command packaging builds unmap's Debian package for this machine's
// architecture from the checkout it runs in:
//
//	go run ./packaging                  # dist/unmap_<version>_<arch>.deb
//	go run ./packaging -out /tmp -version 1.2.3
//
// It compiles cmd/unmap with the package's version stamped in, has the
// binary write its man pages and shell completions, and packs them with
// the systemd units of systemd/ and the commented configurations of
// examples/ (dpkg conffiles) using nfpm as a library: nothing but Go and
// the module proxy is needed. README.md here says what goes where and why.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	var o options
	flag.StringVar(&o.out, "out", "dist", "folder to write the .deb into")
	flag.StringVar(&o.version, "version", "", "package version (Debian syntax, a leading v is dropped); default from git describe")
	flag.StringVar(&o.maintainer, "maintainer", defaultMaintainer, "the package's Maintainer field")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "packaging: no arguments expected; see -help")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p, err := build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
