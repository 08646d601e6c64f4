// Package bench is the end-to-end benchmark of unmap in the
// network-namespace lab (lab): TCP goodput each way, the largest
// IPv6 packet each way, TCP connect time, UDP round-trip time on an
// established flow and first-packet loss of new flows, from the
// site's lan host to the IPv6-only server srv6, through three paths —
// native IPv6 (the lab's limit), unmap, and wireguard-go through the same
// CGN — with the lab's offloads as they are and with GRO/GSO/TSO off.
//
// Run does it all and returns a Report; `unmap bench lab` prints it. Every
// figure is given as a ratio to the native path measured in the same run:
// absolute throughput on a shared 2-core machine means little.
//
// Results save as JSON (results.go) with the machine they were measured
// on; WriteReport makes a Markdown page with SVG plots of them (page.go,
// plots.go), for `unmap bench report`.
package bench
