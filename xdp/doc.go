// Package xdp holds unmap's XDP datapath: the BPF C programs (bpf/), their
// generated objects, and the Go loader an agent uses to load them, set
// their configuration, attach them, manage flow entries and read counters
// and misses.
//
// The programs implement the rules of package
// github.com/unmap-dev/unmap/session/xlat, the pure-Go reference
// translator; the tests in this package run both on the same packets
// through BPF_PROG_RUN and require identical verdicts and bytes.
package xdp
