package relay

// pruneLists keeps in each list of m the items keep says to, in their
// order, and deletes the lists left empty. keep sees every item once and
// may act on those it drops (count them, release what they hold).
func pruneLists[K comparable, V any](m map[K][]V, keep func(V) bool) {
	for k, vs := range m {
		kept := vs[:0]
		for _, v := range vs {
			if keep(v) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(m, k)
		} else {
			m[k] = kept
		}
	}
}
