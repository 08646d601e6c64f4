package metrics

// This package's tests run strict, as the agents' do (set_test.go turns it
// off to see the unknown counter count).
func init() { StrictForTests() }
