package config

import (
	"os/user"
	"strconv"
)

// CheckUser checks the user an agent becomes after its set-up (the
// `user` field): empty (stay root), a name the system knows, or a uid.
// Root is refused: the field is for leaving it.
func CheckUser(field, name string) error {
	if name == "" {
		return nil
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n <= 0 {
			return Errorf(field, "%q is not an unprivileged uid", name)
		}
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return Errorf(field, "%q: no such user", name)
	}
	if u.Uid == "0" {
		return Errorf(field, "%q is root", name)
	}
	return nil
}
