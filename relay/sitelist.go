package relay

import "github.com/unmap-dev/unmap/session"

// siteFlows is a site's flows, linked through their carriers, so that a
// site's replay ends in O(its flows) and adding or removing a flow
// hashes nothing but the site's name (a flood of opens does both for
// every flow).
type siteFlows struct {
	head *carrier
	n    int
}

// siteLink is a carrier's place in its site's list.
type siteLink struct {
	flow       session.Flow
	prev, next *carrier
	listed     bool
}

// link puts flow f's carrier k at the head of its site's list; r.mu held.
func (r *flowRegistry) link(f session.Flow, k *carrier) {
	s := r.bySite[k.site]
	if s == nil {
		s = &siteFlows{}
		r.bySite[k.site] = s
	}
	k.sl = siteLink{flow: f, next: s.head, listed: true}
	if s.head != nil {
		s.head.sl.prev = k
	}
	s.head = k
	s.n++
}

// unindex takes k out of its site's list; r.mu held.
func (r *flowRegistry) unindex(k *carrier) {
	if !k.sl.listed {
		return
	}
	s := r.bySite[k.site]
	if k.sl.prev != nil {
		k.sl.prev.sl.next = k.sl.next
	} else {
		s.head = k.sl.next
	}
	if k.sl.next != nil {
		k.sl.next.sl.prev = k.sl.prev
	}
	k.sl = siteLink{}
	if s.n--; s.n == 0 {
		delete(r.bySite, k.site)
	}
}

// each calls fn for every flow of the site; fn may remove the flow it is
// given.
func (s *siteFlows) each(fn func(session.Flow, *carrier)) {
	if s == nil {
		return
	}
	for k := s.head; k != nil; {
		next := k.sl.next
		fn(k.sl.flow, k)
		k = next
	}
}
