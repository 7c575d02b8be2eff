package experiment

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// Manager opens stores (each with its TSDB's goroutines), and ordered reads
// and CSV exports start goroutines of their own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
