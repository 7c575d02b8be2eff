package tsdbstore

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// CloseIfIdle closes a store only when no read is in flight and none
// began, ended or touched it for the idle time; afterwards reads fail.
func TestCloseIfIdle(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prep   func(t *testing.T, s *Store) (done func())
		idle   time.Duration
		closes bool
	}{
		{"idle since open", nil, 0, true},
		{"opened within the idle time", nil, time.Hour, false},
		{"a read in flight", func(t *testing.T, s *Store) func() {
			q, err := s.Querier(math.MinInt64, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			return func() { q.Close() }
		}, 0, false},
		{"a read begun before the idle time and ended within it", func(t *testing.T, s *Store) func() {
			q, err := s.Querier(math.MinInt64, math.MaxInt64)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			q.Close()
			return nil
		}, 10 * time.Millisecond, false},
		{"a read ended before the idle time", func(t *testing.T, s *Store) func() {
			if err := s.Points(context.Background(), func(*Point) error { return nil }); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			return nil
		}, 10 * time.Millisecond, true},
		{"touched within the idle time", func(t *testing.T, s *Store) func() {
			time.Sleep(20 * time.Millisecond)
			if err := s.Touch(); err != nil {
				t.Fatal(err)
			}
			return nil
		}, 10 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), testOptions(t))
			defer s.Close()
			mustAppend(t, s, []*event.Event{llmEvent(time.Now().UnixMicro(), "m", 100)})
			var done func()
			if tc.prep != nil {
				done = tc.prep(t, s)
			}
			closed, err := s.CloseIfIdle(tc.idle)
			if err != nil {
				t.Fatal(err)
			}
			if done != nil {
				done()
			}
			if closed != tc.closes {
				t.Fatalf("closed: %t, want %t", closed, tc.closes)
			}
			if !closed {
				if err := s.Touch(); err != nil {
					t.Fatalf("touch of an open store: %v", err)
				}
				return
			}
			if _, err := s.Querier(math.MinInt64, math.MaxInt64); !errors.Is(err, ErrClosed) {
				t.Fatalf("a read after CloseIfIdle: %v, want ErrClosed", err)
			}
			if err := s.Touch(); !errors.Is(err, ErrClosed) {
				t.Fatalf("touch after CloseIfIdle: %v, want ErrClosed", err)
			}
			if again, err := s.CloseIfIdle(0); again || err != nil {
				t.Fatalf("a second CloseIfIdle: %t %v", again, err)
			}
		})
	}
}
