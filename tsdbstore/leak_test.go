package tsdbstore

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: a store
// (or a TSDB) that a test forgot to close keeps its background goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
