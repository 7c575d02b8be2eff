package tsdbstore

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// A querier holds the store open: Close waits for it, and a store closed
// gives no new querier.
func TestQuerierHoldsStoreOpen(t *testing.T) {
	s := openStore(t, t.TempDir(), testOptions(t))
	now := time.Now()
	if _, err := s.Append([]*event.Event{llmEvent(now.UnixMicro(), "gpt-4", 120)}, now); err != nil {
		t.Fatal(err)
	}
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while a querier was open")
	case <-time.After(50 * time.Millisecond):
	}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "crucible_event_latency_seconds"))
	n := 0
	for set.Next() {
		n++
	}
	if set.Err() != nil || n != 1 {
		t.Fatalf("series %d, err %v; want 1", n, set.Err())
	}
	q.Close()
	q.Close() // a second Close does not end another read
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Querier(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Querier on a closed store: %v, want ErrClosed", err)
	}
}
