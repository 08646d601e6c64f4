package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sysctl is one setting, in the dotted form of sysctl(8).
type Sysctl struct{ Key, Value string }

// sysctlPath maps net.ipv4.ip_forward to /proc/sys/net/ipv4/ip_forward.
// Keys naming interfaces with dots are not supported (the lab has none).
func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// SetSysctls writes settings in order from a thread inside the namespace:
// /proc/sys/net is resolved against the network namespace of the thread
// that opens it, so the root namespace's values are never touched.
func (n *NS) SetSysctls(s ...Sysctl) error {
	return n.Do(func() error {
		for _, kv := range s {
			if err := os.WriteFile(sysctlPath(kv.Key), []byte(kv.Value), 0); err != nil {
				return fmt.Errorf("%s: sysctl %s=%s: %w", n.Name, kv.Key, kv.Value, err)
			}
		}
		return nil
	})
}

// Sysctl reads one setting as seen inside the namespace.
func (n *NS) Sysctl(key string) (string, error) {
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(sysctlPath(key))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("%s: sysctl %s: %w", n.Name, key, err)
	}
	return v, nil
}
