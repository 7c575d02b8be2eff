package tsdbstore

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

const hourUs = int64(time.Hour / time.Microsecond)

// clientID is the i-th of a sequence of distinct 32-character ids, the
// length of a UUID without dashes.
func clientID(b []byte, i uint64) []byte {
	b = b[:0]
	for _, v := range [2]uint64{i * 0x9e3779b97f4a7c15, i} {
		s := strconv.AppendUint(nil, v, 16)
		for range 16 - len(s) {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	return b
}

func idString(i uint64) string { return string(clientID(nil, i)) }

// fillSteady adds ids at a constant rate of n a window for the given number
// of windows, advancing the clock every 1000 ids as batches do; it returns
// the clock.
func fillSteady(d *dedupSet, startUs int64, n int, windows float64) int64 {
	var buf []byte
	step := float64(d.windowUs) / float64(n)
	now := startUs
	for i := range int(float64(n) * windows) {
		now = startUs + int64(float64(i)*step)
		if i%1000 == 0 {
			d.advance(now)
		}
		buf = clientID(buf, uint64(i))
		id := string(buf)
		if !d.contains(id) {
			d.add(id, now)
		}
	}
	return now
}

// countingHandler counts the records logged at or above Warn.
type countingHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}

func TestDedupSet(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro()

	t.Run("no false duplicates, every id in the window found", func(t *testing.T) {
		n := 3_000_000
		if testing.Short() {
			n = 300_000
		}
		d := newDedupSet(hourUs, 0, nil)
		step := hourUs / int64(n)
		var buf []byte
		for i := range n {
			now := t0 + int64(i)*step
			if i%1000 == 0 {
				d.advance(now)
			}
			buf = clientID(buf, uint64(i))
			if d.contains(string(buf)) {
				t.Fatalf("id %d reported as a duplicate before it was added", i)
			}
			d.add(string(buf), now)
		}
		if d.len() != n {
			t.Fatalf("remembers %d ids, want %d", d.len(), n)
		}
		if len(d.gens) < dedupGenerations {
			t.Fatalf("%d generations: the test should span several", len(d.gens))
		}
		for i := range n {
			if buf = clientID(buf, uint64(i)); !d.contains(string(buf)) {
				t.Fatalf("id %d, added within the window, not found", i)
			}
		}
	})

	t.Run("expiry after the window", func(t *testing.T) {
		d := newDedupSet(hourUs, 0, nil)
		d.advance(t0)
		d.add("a", t0)
		d.add("b", t0+hourUs/2) // a later generation
		d.add("old", t0-hourUs-1)
		for _, c := range []struct {
			name        string
			nowUs       int64
			a, b, older bool
		}{
			{"at the start", t0, true, true, false},
			{"a window after a", t0 + hourUs, true, true, false},
			{"just past a's window", t0 + hourUs + 1, false, true, false},
			{"a window after b", t0 + 3*hourUs/2, false, true, false},
			{"just past b's window", t0 + 3*hourUs/2 + 1, false, false, false},
		} {
			t.Run(c.name, func(t *testing.T) {
				d.advance(c.nowUs)
				if got := d.contains("a"); got != c.a {
					t.Errorf("contains(a) = %v, want %v", got, c.a)
				}
				if got := d.contains("b"); got != c.b {
					t.Errorf("contains(b) = %v, want %v", got, c.b)
				}
				if d.contains("old") {
					t.Error("an id older than the window was kept")
				}
			})
		}
		if d.len() != 0 || len(d.gens) != 0 {
			t.Fatalf("%d ids in %d generations after everything expired", d.len(), len(d.gens))
		}
		// After the idle time, new ids are remembered again.
		d.add("c", t0+5*hourUs)
		if !d.contains("c") {
			t.Fatal("an id added after a long idle time was not found")
		}
	})

	t.Run("remove of a reserved id", func(t *testing.T) {
		for _, c := range []struct {
			name   string
			sealed bool // remove after a newer generation started
		}{{"newest generation", false}, {"sealed generation", true}} {
			t.Run(c.name, func(t *testing.T) {
				d := newDedupSet(hourUs, 0, nil)
				d.advance(t0)
				const n = 50_000
				for i := range n {
					d.add(idString(uint64(i)), t0)
				}
				if c.sealed {
					d.add("newer", t0+hourUs/2)
					if len(d.gens) != 2 {
						t.Fatalf("%d generations, want 2", len(d.gens))
					}
				}
				// Remove every third id: runs close over the holes.
				for i := 0; i < n; i += 3 {
					d.remove(idString(uint64(i)))
				}
				d.remove("never added")
				for i := range n {
					if got, want := d.contains(idString(uint64(i))), i%3 != 0; got != want {
						t.Fatalf("contains(id %d) = %v after the removals, want %v", i, got, want)
					}
				}
				want := n - (n+2)/3
				if c.sealed {
					want++
				}
				if d.len() != want {
					t.Fatalf("len %d, want %d", d.len(), want)
				}
				// A removed id can be reserved again.
				d.add(idString(0), t0+hourUs/2)
				if !d.contains(idString(0)) {
					t.Fatal("a removed id added again is not found")
				}
			})
		}
	})

	t.Run("the bound evicts the oldest first and counts", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			max   int
			genUs int64 // arrival step between ids
		}{
			{"one generation a burst", 1000, 0},
			// 950 ids a window: generations end by time, below their cap.
			{"generations by time", 1000, hourUs / 950},
			{"tiny bound", 1, 1},
		} {
			t.Run(c.name, func(t *testing.T) {
				var warns atomic.Int64
				d := newDedupSet(hourUs, c.max, slog.New(countingHandler{slog.DiscardHandler, &warns}))
				added := 0
				for i := range 10 * c.max {
					now := t0 + int64(i)*c.genUs
					d.advance(now)
					d.add(idString(uint64(i)), now)
					added++
					if d.len() > c.max {
						t.Fatalf("after %d ids: %d remembered, bound %d", added, d.len(), c.max)
					}
				}
				// What is remembered is the newest ids, all of them.
				kept := d.len()
				for i := range added {
					if got, want := d.contains(idString(uint64(i))), i >= added-kept; got != want {
						t.Fatalf("contains(id %d of %d) = %v, want %v (%d remembered)", i, added, got, want, kept)
					}
				}
				if kept < c.max*(dedupGenerations-1)/dedupGenerations {
					t.Errorf("only %d of at most %d ids remembered", kept, c.max)
				}
				if got := testutil.ToFloat64(d.evictions); got != float64(added-kept) {
					t.Errorf("evictions %v, want %d", got, added-kept)
				}
				if got := testutil.ToFloat64(d.ids); got != float64(kept) {
					t.Errorf("ids gauge %v, want %d", got, kept)
				}
				if warns.Load() != 1 {
					t.Errorf("%d warnings, want one", warns.Load())
				}
			})
		}
	})

	t.Run("generations sized from the previous one", func(t *testing.T) {
		d := newDedupSet(hourUs, 0, nil)
		now := fillSteady(d, t0, 400_000, 3)
		d.advance(now)
		for i, g := range d.gens {
			homes := 0
			for _, t := range g.segs {
				homes += t.homes
			}
			load := float64(g.n) / float64(homes)
			if i < len(d.gens)-1 && (load < dedupSealedLoad-0.05 || load > dedupSealedLoad+0.01) {
				t.Errorf("sealed generation %d: load %.3f, want ~%v", i, load, dedupSealedLoad)
			}
			if load > dedupMaxLoad+0.01 {
				t.Errorf("generation %d: load %.3f above %v", i, load, dedupMaxLoad)
			}
		}
	})
}

// TestDedupStoreBound checks the bound set through Options, its metrics on
// the store's registerer, and that a restart keeps the newest ids.
func TestDedupStoreBound(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UnixMicro()
	send := func(s *Store, i int) Status {
		e := llmEvent(now+int64(i), "gpt-4", 5)
		e.EventID, e.ClientID = fmt.Sprintf("bounded-%d", i), true
		return mustAppend(t, s, []*event.Event{e})[0].Status
	}
	open := func() (*Store, *prometheus.Registry) {
		opts := testOptions(t)
		opts.DedupMaxIDs = 8
		reg := prometheus.NewRegistry()
		opts.Registerer = reg
		return openStore(t, dir, opts), reg
	}
	remembered := func(s *Store) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.dedup.len()
	}
	const n = 40
	s, reg := open()
	for i := range n {
		if st := send(s, i); st != Stored {
			t.Fatalf("id %d: status %d, want stored", i, st)
		}
	}
	kept := remembered(s)
	for _, c := range []struct {
		name string
		want float64
	}{{"crucible_ingest_dedup_evictions_total", float64(n - kept)}, {"crucible_ingest_dedup_ids", float64(kept)}} {
		t.Run(c.name, func(t *testing.T) {
			if got := gathered(t, reg, c.name); got != c.want {
				t.Errorf("%s = %v, want %v", c.name, got, c.want)
			}
		})
	}
	if kept > 8 || kept < 6 {
		t.Fatalf("%d ids remembered with a bound of 8", kept)
	}
	if st := send(s, n-1); st != Duplicate {
		t.Errorf("the newest id: status %d, want duplicate", st)
	}
	if st := send(s, 0); st != Stored {
		t.Errorf("the oldest, forgotten id: status %d, want stored again", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The log holds 41 ids in the window: the rebuilt set keeps the newest.
	s, reg = open()
	defer s.Close()
	kept = remembered(s)
	if got, want := gathered(t, reg, "crucible_ingest_dedup_evictions_total"), float64(n+1-kept); got != want {
		t.Errorf("evictions after the restart %v, want %v", got, want)
	}
	if st := send(s, 0); st != Duplicate {
		t.Errorf("after a restart, the newest id: status %d, want duplicate", st)
	}
	if st := send(s, 1); st != Stored {
		t.Errorf("after a restart, a forgotten id: status %d, want stored again", st)
	}
}

// gathered is the value of the one series of name, which must carry the
// store's experiment_id.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.Metric) != 1 || len(mf.Metric[0].Label) != 1 || mf.Metric[0].Label[0].GetValue() != "exp" {
			t.Fatalf("%s: %v, want one series labelled with the experiment id", name, mf.Metric)
		}
		m := mf.Metric[0]
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// TestDedupTable checks one segment's ordered table against a map under
// random inserts and removals, with keys crowded at the end so that runs
// spill into the room past the last home.
func TestDedupTable(t *testing.T) {
	for _, c := range []struct {
		name  string
		homes int
		key   func(r *rand.Rand) dedupKey
	}{
		{"uniform", 1000, func(r *rand.Rand) dedupKey { return dedupKey{r.Uint64() >> dedupSegmentBits, r.Uint64()} }},
		{"crowded at the end", 1000, func(r *rand.Rand) dedupKey {
			return dedupKey{(math.MaxUint64 - r.Uint64N(1<<50)) >> dedupSegmentBits, r.Uint64()}
		}},
		{"equal first hashes", 64, func(r *rand.Rand) dedupKey { return dedupKey{42, r.Uint64N(400) + 1} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var tb dedupTable
			tb.resize(c.homes)
			model := map[dedupKey]bool{}
			var keys []dedupKey
			for step := range 20_000 {
				if len(keys) > 0 && r.IntN(3) == 0 {
					k := keys[r.IntN(len(keys))]
					if got := tb.remove(k); got != model[k] {
						t.Fatalf("step %d: remove = %v, want %v", step, got, model[k])
					}
					delete(model, k)
				} else {
					k := c.key(r)
					keys = append(keys, k)
					if got := tb.insert(k); got == model[k] {
						t.Fatalf("step %d: insert = %v of a key present: %v", step, got, model[k])
					}
					model[k] = true
				}
				if step%1000 == 0 {
					tb.resize(max(len(model)*10/9, 16)) // tight, like a sealed generation
				}
			}
			if tb.n != len(model) {
				t.Fatalf("n %d, want %d", tb.n, len(model))
			}
			for _, k := range keys {
				if _, got := tb.find(k); got != model[k] {
					t.Fatalf("find(%x) = %v, want %v", k, got, model[k])
				}
			}
			var prev dedupKey
			for i, k := range tb.slots {
				if k == (dedupKey{}) {
					continue
				}
				if !prev.less(k) || tb.home(k) > i {
					t.Fatalf("slot %d: %x after %x, home %d: table out of order", i, k, prev, tb.home(k))
				}
				prev = k
			}
		})
	}
}

// BenchmarkDedupMemory reports the heap in use per remembered id. "steady"
// ingests at a constant rate for two windows, so that generations are
// sized from their predecessors, and stops as the newest generation is
// full (the best moment) or just after a new one started (the worst: its
// table is sized but empty); "first window" is the hour after a start.
func BenchmarkDedupMemory(b *testing.B) {
	for _, c := range []struct {
		name    string
		windows float64
	}{
		{"steady", 2},
		{"steady, new generation", 2 + 0.01/dedupGenerations},
		{"first window", 1},
	} {
		for _, n := range []int{1 << 20, 4 << 20} {
			b.Run(fmt.Sprintf("%s/ids=%dM", c.name, n>>20), func(b *testing.B) {
				var perID, ids float64
				for b.Loop() {
					before := heapInUse()
					d := newDedupSet(hourUs, 1<<30, nil)
					fillSteady(d, 1, n, c.windows)
					perID = float64(heapInUse()-before) / float64(d.len())
					ids = float64(d.len())
					runtime.KeepAlive(d)
				}
				b.ReportMetric(perID, "bytes/id")
				b.ReportMetric(ids, "ids")
			})
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkDedupOps measures what ingest does per event, on a set that
// remembers 1M or 4M ids in steady state.
func BenchmarkDedupOps(b *testing.B) {
	for _, n := range []int{1 << 20, 4 << 20} {
		d := newDedupSet(hourUs, 1<<30, nil)
		now := fillSteady(d, 1, n, 2)
		d.advance(now)
		step := float64(d.windowUs) / float64(n)
		next := uint64(2 * n) // ids not yet added
		b.Run(fmt.Sprintf("contains-miss/ids=%dM", n>>20), func(b *testing.B) {
			var buf []byte
			i := next + 1<<40
			for b.Loop() {
				buf = clientID(buf, i)
				if d.contains(string(buf)) {
					b.Fatal("false duplicate")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("contains-hit/ids=%dM", n>>20), func(b *testing.B) {
			var buf []byte
			r := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				// The newest n ids are all remembered.
				buf = clientID(buf, next-1-r.Uint64N(uint64(n)))
				if !d.contains(string(buf)) {
					b.Fatal("id not found")
				}
			}
		})
		b.Run(fmt.Sprintf("contains+add/ids=%dM", n>>20), func(b *testing.B) {
			var buf []byte
			t := float64(now)
			for b.Loop() {
				if next%1000 == 0 {
					d.advance(int64(t))
				}
				buf = clientID(buf, next)
				if !d.contains(string(buf)) {
					d.add(string(buf), int64(t))
				}
				next++
				t += step
			}
		})
	}
}
