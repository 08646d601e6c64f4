package handshake

// The handshake's steps as pure functions of the segments seen so far:
// the remote's SYN (from the offer) and the LAN host's SYN/ACK (at the
// edge) or the carrier SYN made of it (at the relay). Ports are the ones
// each segment carries where it is sent: the flow's on the flow's side,
// E and R (or C and R) on the carrier.

// Answers reports whether synack is a SYN/ACK answering syn.
func Answers(synack, syn Segment) bool {
	return synack.Is(SYN|ACK) && synack.Ack == syn.Seq+1
}

// CarrierSYN is the LAN host's SYN/ACK made into the carrier's SYN from
// the edge's port e to the relay's port r: the same sequence number,
// window and options, no ACK, so the CGNAT opens a TCP mapping as for any
// outbound connection.
func CarrierSYN(hostSynAck Segment, e, r uint16) Segment {
	return Segment{SrcPort: e, DstPort: r, Seq: hostSynAck.Seq, Flags: hostSynAck.Flags &^ ACK,
		Window: hostSynAck.Window, Options: hostSynAck.Options}
}

// IsCarrierSYN reports whether s, arriving on a carrier whose bind token
// is the host's ISN, is the carrier SYN (a first one or a resent one).
func IsCarrierSYN(s Segment, isn uint32) bool { return s.Is(SYN) && s.Seq == isn }

// RelaySynAck is the relay's answer to the carrier SYN, to the CGNAT: the
// remote's ISN, window and options (its window scale, so a CGNAT that
// tracks windows knows both), acknowledging the host's ISN. carrierSYN's
// ports are as the relay received it (C to R).
func RelaySynAck(remoteSYN, carrierSYN Segment) Segment {
	return Segment{SrcPort: carrierSYN.DstPort, DstPort: carrierSYN.SrcPort, Seq: remoteSYN.Seq,
		Ack: carrierSYN.Seq + 1, Flags: SYN | ACK, Window: remoteSYN.Window, Options: remoteSYN.Options}
}

// HostSynAck is the LAN host's own SYN/ACK as the remote gets it, made
// back from the carrier SYN: its ISN, window and options, acknowledging
// the remote's SYN, on the flow's ports.
func HostSynAck(remoteSYN, carrierSYN Segment) Segment {
	return Segment{SrcPort: remoteSYN.DstPort, DstPort: remoteSYN.SrcPort, Seq: carrierSYN.Seq,
		Ack: remoteSYN.Seq + 1, Flags: carrierSYN.Flags | ACK, Window: carrierSYN.Window, Options: carrierSYN.Options}
}

// IsRelaySynAck reports whether s, arriving at the edge on the carrier,
// is the relay's SYN/ACK for this handshake.
func IsRelaySynAck(s, remoteSYN, hostSynAck Segment) bool {
	return s.Is(SYN|ACK) && s.Seq == remoteSYN.Seq && s.Ack == hostSynAck.Seq+1
}

// CompletingACK is the edge's ACK to the relay's SYN/ACK, on the
// carrier from E to R: the CGNAT sees a complete three-way handshake. Its
// window is the host's, in the scaled units both sides agreed on.
func CompletingACK(remoteSYN, hostSynAck Segment, e, r uint16) Segment {
	win := hostSynAck.Window
	hs, hok := WindowScale(hostSynAck.Options)
	_, rok := WindowScale(remoteSYN.Options)
	if hok && rok {
		win = max(win>>hs, 1)
	}
	return Segment{SrcPort: e, DstPort: r, Seq: hostSynAck.Seq + 1, Ack: remoteSYN.Seq + 1, Flags: ACK, Window: win}
}

// IsCompletingACK reports whether s, arriving at the relay on the
// carrier, is the edge's completing ACK (carrierSYN as the relay got it).
func IsCompletingACK(s, remoteSYN, carrierSYN Segment) bool {
	return s.Is(ACK) && s.Seq == carrierSYN.Seq+1 && s.Ack == remoteSYN.Seq+1
}
