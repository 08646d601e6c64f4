package handshake

import (
	"bytes"
	"testing"
)

// The whole handshake as the two agents run it, segment by segment: each
// step's output is what the next one checks, and the carrier ends with
// the flow's own sequence numbers in both directions.
func TestStepsChain(t *testing.T) {
	const e, r, c = 40001, 50001, 61001 // edge port, relay port, CGNAT port
	remoteSYN := sample()
	hostOpts := []byte{2, 4, 0x05, 0xa0, 1, 1, 4, 2, 1, 3, 3, 9}
	hostSynAck := Segment{SrcPort: remoteSYN.DstPort, DstPort: remoteSYN.SrcPort, Seq: 0x10203040,
		Ack: remoteSYN.Seq + 1, Flags: SYN | ACK | ECE, Window: 65160, Options: hostOpts}
	if !Answers(hostSynAck, remoteSYN) {
		t.Fatal("the host's SYN/ACK does not answer the SYN")
	}
	if Answers(Segment{Flags: RST | ACK, Ack: remoteSYN.Seq + 1}, remoteSYN) {
		t.Error("a RST taken for a SYN/ACK")
	}

	// Edge: the carrier SYN keeps the host's ISN, window and options.
	csyn := CarrierSYN(hostSynAck, e, r)
	if csyn.Flags != SYN|ECE || csyn.Ack != 0 || csyn.Seq != hostSynAck.Seq || csyn.SrcPort != e || csyn.DstPort != r ||
		csyn.Window != hostSynAck.Window || !bytes.Equal(csyn.Options, hostOpts) {
		t.Errorf("carrier SYN %+v", csyn)
	}
	// The CGNAT rewrites the source port only.
	atRelay := csyn
	atRelay.SrcPort = c
	if !IsCarrierSYN(atRelay, hostSynAck.Seq) || IsCarrierSYN(atRelay, hostSynAck.Seq+1) {
		t.Error("carrier SYN not recognised by its ISN")
	}

	// Relay: the SYN/ACK to the CGNAT is the remote's side of things.
	rsa := RelaySynAck(remoteSYN, atRelay)
	if rsa.SrcPort != r || rsa.DstPort != c || rsa.Seq != remoteSYN.Seq || rsa.Ack != hostSynAck.Seq+1 ||
		rsa.Flags != SYN|ACK || rsa.Window != remoteSYN.Window || !bytes.Equal(rsa.Options, remoteSYN.Options) {
		t.Errorf("relay SYN/ACK %+v", rsa)
	}
	// ... and the remote gets the host's SYN/ACK back as it was.
	hsa := HostSynAck(remoteSYN, atRelay)
	if hsa.SrcPort != hostSynAck.SrcPort || hsa.DstPort != hostSynAck.DstPort || hsa.Seq != hostSynAck.Seq ||
		hsa.Ack != hostSynAck.Ack || hsa.Flags != hostSynAck.Flags || hsa.Window != hostSynAck.Window || !bytes.Equal(hsa.Options, hostOpts) {
		t.Errorf("host SYN/ACK to the remote %+v, want %+v", hsa, hostSynAck)
	}

	// Edge: the relay's SYN/ACK (after the CGNAT: ports r → e) is known
	// by its numbers; a stray one is not.
	atEdge := rsa
	atEdge.DstPort = e
	if !IsRelaySynAck(atEdge, remoteSYN, hostSynAck) {
		t.Error("relay SYN/ACK not recognised at the edge")
	}
	stray := atEdge
	stray.Ack++
	if IsRelaySynAck(stray, remoteSYN, hostSynAck) {
		t.Error("a SYN/ACK acknowledging another ISN taken for the relay's")
	}
	ack := CompletingACK(remoteSYN, hostSynAck, e, r)
	if ack.Flags != ACK || ack.Seq != hostSynAck.Seq+1 || ack.Ack != remoteSYN.Seq+1 || ack.SrcPort != e || ack.DstPort != r {
		t.Errorf("completing ACK %+v", ack)
	}
	// Both sides scale (7 and 9): the window is the host's in its units.
	if ack.Window != 65160>>9 {
		t.Errorf("completing ACK window %d, want %d", ack.Window, 65160>>9)
	}
	ack.SrcPort = c
	if !IsCompletingACK(ack, remoteSYN, atRelay) {
		t.Error("completing ACK not recognised at the relay")
	}
	if IsCompletingACK(atRelay, remoteSYN, atRelay) {
		t.Error("the carrier SYN taken for the completing ACK")
	}
	// Sequence numbers wrap: the remote's ISN here is 0xfffffff0 + 1.
	if ack.Ack != 0xfffffff1 {
		t.Errorf("ack %#x", ack.Ack)
	}
}

// Without window scaling on both sides the ACK's window is the host's
// unscaled one.
func TestCompletingACKUnscaled(t *testing.T) {
	remoteSYN := Segment{Seq: 1, Flags: SYN, Options: []byte{2, 4, 5, 0xb4}}
	host := Segment{Seq: 9, Flags: SYN | ACK, Window: 28800, Options: []byte{1, 3, 3, 7}}
	if w := CompletingACK(remoteSYN, host, 1, 2).Window; w != 28800 {
		t.Errorf("window %d", w)
	}
}
