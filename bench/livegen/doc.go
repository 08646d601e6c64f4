// Package livegen is the CGNAT bench's traffic generator and counter: a
// BPF program run by BPF_PROG_RUN in live-frames mode
// (BPF_F_TEST_XDP_LIVE_FRAMES) that sends 64-byte UDP frames out of a
// veth, one flow after another from a configured set, and an XDP program
// on the receiving side that counts the frames that arrive translated.
// xdp-tools' generator does not load on this kernel (ENVIRONMENT.md).
package livegen
