//go:build !linux

package ports

import "errors"

var errNotLinux = errors.New("ports: reserving carrier ports needs Linux")

// Reserve needs Linux; see reserve_linux.go.
func Reserve(Range) error { return errNotLinux }

// Reserved needs Linux.
func Reserved() ([]Range, error) { return nil, errNotLinux }

// Ephemeral needs Linux.
func Ephemeral() (Range, error) { return Range{}, errNotLinux }

// CheckReserved needs Linux.
func CheckReserved(Range) error { return errNotLinux }
