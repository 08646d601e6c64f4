package main

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes a man page per command from the same tree `--help`
// prints, so the two never disagree. The packaging (go run ./packaging)
// runs it; it is hidden because operators read the pages, not make them.
func newManCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man",
		Short:  "Write a man page (section 8) for every command into a folder",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			// The footer would name cobra and today's date: a page
			// made twice from one commit must be the same bytes.
			disableAutoGenTag(root)
			return doc.GenManTree(root, &doc.GenManHeader{
				Section: "8",
				Date:    manDate(),
				Source:  "unmap " + buildVersion(),
				Manual:  "unmap",
			}, dir)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "man", "folder to write the pages into")
	return cmd
}

func disableAutoGenTag(c *cobra.Command) {
	c.DisableAutoGenTag = true
	for _, s := range c.Commands() {
		disableAutoGenTag(s)
	}
}

// manDate is the commit's time when Go stamped it, so pages built from one
// commit carry one date; nil lets cobra take SOURCE_DATE_EPOCH
// (reproducible builds) or now.
func manDate() *time.Time {
	if info, ok := debug.ReadBuildInfo(); ok {
		if t, err := time.Parse(time.RFC3339, readFacts(info).time); err == nil {
			return &t
		}
	}
	return nil
}
