package main

import (
	"log/slog"
	"path/filepath"

	"kernel.org/pub/linux/libs/security/libcap/cap"

	"github.com/unmap-dev/unmap/cmd/unmap/privdrop"
)

// dropPrivileges is what an agent calls once its set-up is done: it keeps
// only keep (privdrop.Relay or privdrop.Edge), becomes user if set, and
// hands the status socket's folder to that user.
func dropPrivileges(keep []cap.Value, user, socket string) func() error {
	return func() error {
		p := privdrop.Plan{Keep: keep, User: user}
		if socket != "" {
			p.Dirs = []string{filepath.Dir(socket)}
		}
		res, err := privdrop.Drop(p)
		if err != nil {
			return err
		}
		slog.Info("privileges dropped", "capabilities", res.Kept, "uid", res.UID, "gid", res.GID, "bounding_set_kept", res.BoundingKept)
		return nil
	}
}
