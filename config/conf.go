// Package config reads the agents' YAML files: strict decoding (an unknown
// key is an error, since a misspelt option silently ignored is how
// operators lose an afternoon), and errors that name the file, the field
// and the reason, such as
//
//	relay.yaml: sites[2].prefix: 2001:db8::/129 is not a prefix
//
// It also parses the value types both agents' configs share.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a config file; anything larger is not a config.
const MaxFileSize = 1 << 20

// Error says which field of which file is wrong and why.
type Error struct {
	File   string // base name of the file, or "" when validating a struct built in code
	Field  string // path such as sites[2].prefix
	Reason string
}

func (e *Error) Error() string {
	s := e.Field + ": " + e.Reason
	if e.Field == "" {
		s = e.Reason
	}
	if e.File != "" {
		s = e.File + ": " + s
	}
	return s
}

// Errorf builds an *Error for field.
func Errorf(field, format string, args ...any) error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// InFile stamps the file name on an *Error from validation; other errors
// get the name as a prefix.
func InFile(name string, err error) error {
	if err == nil {
		return nil
	}
	var ce *Error
	if errors.As(err, &ce) && ce.File == "" {
		c := *ce
		c.File = name
		return &c
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Load decodes the YAML file at path into v strictly: unknown keys and
// more than one document are errors. It does not validate v.
func Load(path string, v any) error {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return fmt.Errorf("%s: larger than %d bytes", name, MaxFileSize)
	}
	return InFile(name, Decode(data, v))
}

// Decode is Load for bytes already read.
func Decode(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty file")
		}
		return yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// yamlError strips the "yaml: " prefix and folds yaml.v3's multi-line
// TypeError into one line per problem, joined by "; ".
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(joinLines(te.Errors))
	}
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "yaml: " {
		msg = msg[6:]
	}
	return errors.New(msg)
}

func joinLines(lines []string) string {
	var b bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	return b.String()
}
