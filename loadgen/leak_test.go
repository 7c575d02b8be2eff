package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind: Run
// starts one per connection.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
