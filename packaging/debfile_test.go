package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// debMember is one member of the ar archive a .deb is.
type debMember struct {
	name string
	data []byte
}

// readAr reads an ar archive (deb(5): the global header, then 60-byte
// member headers, data padded to an even length).
func readAr(b []byte) ([]debMember, error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, errors.New("not an ar archive")
	}
	b = b[len(magic):]
	var ms []debMember
	for len(b) > 0 {
		if len(b) < 60 || string(b[58:60]) != "`\n" {
			return nil, fmt.Errorf("bad ar member header after %d members", len(ms))
		}
		name := strings.TrimRight(strings.TrimSpace(string(b[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(b[48:58])))
		if err != nil || size < 0 || 60+size > len(b) {
			return nil, fmt.Errorf("ar member %s: bad size %q", name, b[48:58])
		}
		ms = append(ms, debMember{name, b[60 : 60+size]})
		b = b[60+size:]
		if size%2 == 1 && len(b) > 0 {
			b = b[1:]
		}
	}
	return ms, nil
}

// tarEntry is a file of a control or data tarball.
type tarEntry struct {
	hdr  *tar.Header
	data []byte
}

func readTarGz(b []byte) (map[string]tarEntry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	m := map[string]tarEntry{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return m, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		m[strings.TrimPrefix(h.Name, ".")] = tarEntry{h, data}
	}
}

// deb is a package read back: its control files and its data, by path
// ("/usr/bin/unmap", "/conffiles" for the control part).
type debPkg struct {
	binary  string
	control map[string]tarEntry
	data    map[string]tarEntry
}

func readDeb(path string) (*debPkg, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ms, err := readAr(b)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.name)
	}
	if strings.Join(names, " ") != "debian-binary control.tar.gz data.tar.gz" {
		return nil, fmt.Errorf("members %v, want debian-binary control.tar.gz data.tar.gz", names)
	}
	d := &debPkg{binary: string(ms[0].data)}
	if d.control, err = readTarGz(ms[1].data); err != nil {
		return nil, fmt.Errorf("control.tar.gz: %w", err)
	}
	if d.data, err = readTarGz(ms[2].data); err != nil {
		return nil, fmt.Errorf("data.tar.gz: %w", err)
	}
	return d, nil
}

// controlField is the value of one field of the control file.
func (d *debPkg) controlField(name string) string {
	for _, l := range strings.Split(string(d.control["/control"].data), "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

// unitSettings reads a unit file's Key=Value lines (comments skipped;
// a key given twice keeps both values, joined by a space, as systemd
// does for lists).
func unitSettings(text string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		if old, ok := m[k]; ok {
			v = old + " " + v
		}
		m[k] = v
	}
	return m
}
