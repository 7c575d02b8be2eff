package api

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: the
// tests serve a Manager (stores with their TSDBs) over httptest servers,
// and streamed exports run goroutines of their own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
