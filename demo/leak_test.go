package demo_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// tests run a whole sidecar (stores with their TSDBs) and must close it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
