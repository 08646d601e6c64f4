package session

// MaxSiteIDLen is the longest site id: one DNS label.
const MaxSiteIDLen = 63

// ValidSiteID reports whether id is a site id: a DNS label in lowercase,
// letters, digits and hyphens that neither start nor end it, 1 to 63
// characters. The one rule for certificates (control/pki) and configs
// (config), kept here so config needs no control package.
func ValidSiteID(id string) bool {
	if len(id) == 0 || len(id) > MaxSiteIDLen || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
