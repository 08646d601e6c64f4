package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// debianVersion matches a Debian upstream version without epoch or
// revision: a digit first, then letters, digits and . + ~ (deb-version(7)).
var debianVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// cleanVersion accepts a version given by hand: a leading v (a git tag)
// is dropped, the rest must be a Debian version.
func cleanVersion(v string) (string, error) {
	v = strings.TrimPrefix(v, "v")
	if !debianVersion.MatchString(v) {
		return "", fmt.Errorf("version %q: want a Debian version (a digit, then letters, digits, . + ~), such as 1.2.3 or 1.3.0~rc1", v)
	}
	return v, nil
}

// describeRE reads `git describe --long --dirty` after a tag vX.Y.Z or
// vX.Y.Z-pre: the tag, the commits since it, the abbreviated revision.
var describeRE = regexp.MustCompile(`^v([0-9][0-9A-Za-z.]*)(?:-([0-9A-Za-z.]+))?-([0-9]+)-g([0-9a-f]+)(-dirty)?$`)

// versionFromDescribe turns git's description of the checkout into the
// package version, so that dpkg orders builds as they were made:
//
//	v1.2.3-0-g874476a1b2c3          1.2.3
//	v1.3.0-rc1-0-g874476a1b2c3      1.3.0~rc1 (before 1.3.0)
//	v1.2.3-4-g874476a1b2c3          1.2.3+git4.874476a1b2c3 (after 1.2.3)
//	874476a1b2c3 (no tag yet)       0~git20261202210548.874476a1b2c3 (before any release;
//	                                 the commit time orders snapshots)
//
// A checkout with uncommitted changes gets .dirty at the end.
func versionFromDescribe(describe string, commit time.Time) (string, error) {
	if m := describeRE.FindStringSubmatch(describe); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "~" + m[2]
		}
		if m[3] != "0" {
			v += "+git" + m[3] + "." + m[4]
		}
		if m[5] != "" {
			v += plusOrDot(v) + "dirty"
		}
		return cleanVersion(v)
	}
	rev, dirty := strings.CutSuffix(describe, "-dirty")
	if !regexp.MustCompile(`^[0-9a-f]{7,40}$`).MatchString(rev) {
		return "", fmt.Errorf("git describe said %q: neither a vX.Y.Z tag nor a revision", describe)
	}
	v := "0~git" + commit.UTC().Format("20060102150405") + "." + rev
	if dirty {
		v += ".dirty"
	}
	return v, nil
}

func plusOrDot(v string) string {
	if strings.Contains(v, "+") {
		return "."
	}
	return "+"
}

// source is what git says of the checkout being packaged.
type source struct {
	version  string    // the package version (versionFromDescribe)
	revision string    // full commit id, with -dirty for uncommitted changes
	time     time.Time // commit time: also the package files' time, so two builds of one commit are the same bytes
}

// gitSource asks git about the checkout at dir.
func gitSource(ctx context.Context, dir string) (source, error) {
	var s source
	desc, err := git(ctx, dir, "describe", "--tags", "--match", "v[0-9]*", "--long", "--dirty", "--abbrev=12", "--always")
	if err != nil {
		return s, err
	}
	head, err := git(ctx, dir, "log", "-1", "--format=%H %ct")
	if err != nil {
		return s, err
	}
	var sec int64
	if _, err := fmt.Sscan(head, &s.revision, &sec); err != nil {
		return s, fmt.Errorf("git log said %q for the commit and its time", head)
	}
	if strings.HasSuffix(desc, "-dirty") {
		s.revision += "-dirty"
	}
	s.time = time.Unix(sec, 0).UTC()
	s.version, err = versionFromDescribe(desc, s.time)
	return s, err
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("git %s: %s", args[0], strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}
