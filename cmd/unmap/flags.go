package main

import "path/filepath"

// overrideString puts a flag's value over a config field when the flag was
// given on the command line.
func overrideString(changed bool, field *string, flag string) {
	if changed {
		*field = flag
	}
}

func fileName(path string) string { return filepath.Base(path) }
