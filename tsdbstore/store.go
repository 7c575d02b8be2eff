// Package tsdbstore is one experiment's storage: an append-only, checksummed
// event log (the source of truth for full events) and a Prometheus TSDB that
// holds one raw sample per event per number.
//
// Write order: the log first, then the TSDB. Every accepted event's samples
// reach the TSDB: same-millisecond events of one series get distinct slots
// (see slots.go), each batch is appended in time order, and events the TSDB
// would not take (older than its out-of-order window) are rejected before
// anything is written. After a crash, Open replays the log from the last
// position known to be in the TSDB; re-appending a sample the TSDB already
// holds is harmless, so replay is idempotent.
package tsdbstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Errors of Append, classified with errors.Is.
var (
	ErrTooOld  = errors.New("event is older than the TSDB's out-of-order window")
	ErrNoSlot  = errors.New("no free TSDB slot for this event")
	ErrClosed  = errors.New("store is closed")
	ErrStorage = errors.New("storage failure")
)

// MetricsConfig says which numbers of an event are written to the TSDB.
type MetricsConfig struct {
	Latency, Cost, SuccessRate, Tokens bool
}

// AllMetrics writes every number.
var AllMetrics = MetricsConfig{Latency: true, Cost: true, SuccessRate: true, Tokens: true}

// Options configure a Store.
type Options struct {
	ExperimentID     string
	Condition        string        // the experiment's condition, a label of every series
	OutOfOrderWindow time.Duration // must be > 0
	Retention        time.Duration // 0 keeps samples forever
	SyncInterval     time.Duration // 0 fsyncs the log before Append returns
	DedupWindow      time.Duration
	SegmentSize      int64
	Metrics          MetricsConfig
	Registerer       prometheus.Registerer // wrapped with experiment_id here
	Logger           *slog.Logger
}

// DefaultSegmentSize is the size at which the log starts a new segment file.
const DefaultSegmentSize = 128 << 20

// Status is the outcome of one event of an Append.
type Status uint8

const (
	Stored Status = iota
	Duplicate
	Rejected
)

// Result is what happened to one event.
type Result struct {
	Status Status
	Err    error // set when Rejected
}

// Store is one experiment's event log and TSDB. Its methods are safe for
// concurrent use; appends are serialised.
type Store struct {
	dir    string
	opts   Options
	logger *slog.Logger
	log    *eventLog
	db     *tsdb.DB
	reg    *unregisterer

	mu      sync.Mutex // serialises appends; guards the fields below
	slots   *slotTracker
	dedup   *dedupSet
	series  map[seriesKey]*seriesRefs
	applied Position // everything before it is committed to the TSDB
	closed  bool
	scratch []byte // records of the append in progress
	frame   []byte // the same, framed and compressed
	order   []int

	count atomic.Int64

	stop chan struct{}
	done chan struct{}
}

const appliedFile = "tsdb.applied"

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.OutOfOrderWindow <= 0 {
		return nil, errors.New("out-of-order window must be > 0")
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	s := &Store{
		dir: dir, opts: opts, logger: opts.Logger,
		series: make(map[seriesKey]*seriesRefs),
		stop:   make(chan struct{}), done: make(chan struct{}),
	}
	s.reg = newUnregisterer(prometheus.WrapRegistererWith(prometheus.Labels{"experiment_id": opts.ExperimentID}, opts.Registerer))

	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.OutOfOrderTimeWindow = opts.OutOfOrderWindow.Milliseconds()
	tsdbOpts.RetentionDuration = opts.Retention.Milliseconds()
	tsdbOpts.WALCompression = compression.Snappy
	db, err := tsdb.Open(filepath.Join(dir, "tsdb"), opts.Logger.With("component", "tsdb"), s.reg, tsdbOpts, nil)
	if err != nil {
		s.reg.unregisterAll()
		return nil, fmt.Errorf("open TSDB: %w", err)
	}
	s.db = db

	headMax := db.Head().MaxTime()
	for _, b := range db.Blocks() {
		headMax = max(headMax, b.Meta().MaxTime-1)
	}
	if headMax == math.MinInt64 {
		headMax = math.MinInt64 / 2 // empty: no bound yet
	}
	now := time.Now().UnixMicro()
	s.slots = newSlotTracker(opts.OutOfOrderWindow.Milliseconds(), headMax)
	s.dedup = newDedupSet(opts.DedupWindow.Microseconds())
	s.dedup.advance(now)
	dedupFrom := now - opts.DedupWindow.Microseconds()

	var recs []slotMark
	s.log, err = openEventLog(filepath.Join(dir, "events"), opts.SegmentSize, opts.Logger, func(r *Record) error {
		s.count.Add(1)
		if r.ClientID != "" && r.ArrivalUs >= dedupFrom {
			s.dedup.add(r.ClientID, r.ArrivalUs)
		}
		recs = append(recs, slotMark{r.SeriesHash, r.Ms, r.Slot})
		if len(recs) >= 1<<16 {
			recs = s.markSlots(recs)
		}
		return nil
	})
	if err != nil {
		s.closeTSDB()
		return nil, fmt.Errorf("open event log: %w", err)
	}
	s.markSlots(recs)

	s.applied = s.readApplied()
	if err := s.replay(); err != nil {
		s.log.close()
		s.closeTSDB()
		return nil, err
	}
	go s.loop()
	return s, nil
}

type slotMark struct {
	hash uint64
	ms   int64
	slot uint8
}

// markSlots records stored events inside the out-of-order window in the slot
// tracker, so events arriving after a restart do not reuse their slots.
func (s *Store) markSlots(recs []slotMark) []slotMark {
	for _, r := range recs {
		s.slots.maxMs = max(s.slots.maxMs, r.ms)
	}
	minMs := s.slots.maxMs - s.slots.windowMs
	for _, r := range recs {
		if r.ms >= minMs {
			s.slots.mark(r.hash, r.ms, r.slot)
		}
	}
	s.slots.prune()
	return recs[:0]
}

func (s *Store) readApplied() Position {
	var p Position
	b, err := os.ReadFile(filepath.Join(s.dir, appliedFile))
	if err != nil || json.Unmarshal(b, &p) != nil {
		return Position{} // replay everything: re-appending is harmless
	}
	return p
}

func (s *Store) writeApplied(p Position) error {
	b, _ := json.Marshal(p)
	tmp := filepath.Join(s.dir, appliedFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, appliedFile))
}

// replay appends the samples of every log record after s.applied to the TSDB.
func (s *Store) replay() error {
	end := s.log.end()
	if !s.applied.Less(end) {
		return nil
	}
	start := time.Now()
	app := s.db.AppenderV2(context.Background())
	n := 0
	var ev event.Event
	err := s.log.readRange(s.applied, end, func(r *Record) error {
		if err := event.DecodeStored(r.JSON, &ev); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		ev.ExperimentID, ev.Condition = s.opts.ExperimentID, s.opts.Condition
		if err := s.appendSamples(app, &ev, r.Ms, r.Slot); err != nil {
			s.logger.Warn("replay: TSDB did not take a sample", "event_id", ev.EventID, "err", err)
		}
		n++
		if n%10000 == 0 {
			if err := app.Commit(); err != nil {
				return err
			}
			app = s.db.AppenderV2(context.Background())
		}
		return nil
	})
	if err != nil {
		_ = app.Rollback()
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	s.applied = end
	if n > 0 {
		s.logger.Info("replayed event log into TSDB", "events", n, "duration", time.Since(start))
	}
	return s.writeApplied(end)
}

// Append stores events that arrived at arrival. Events must be fully
// enriched. The result has one entry per event. A non-nil error means a
// storage failure: no event of the batch is acknowledged.
func (s *Store) Append(events []*event.Event, arrival time.Time) ([]Result, error) {
	results := make([]Result, len(events))
	if len(events) == 0 {
		return results, nil
	}
	arrivalUs := arrival.UnixMicro()
	// Encode outside the lock: it is most of the work.
	jsonBuf := make([]byte, 0, 640*len(events))
	offsets := make([]int, len(events)+1)
	hashes := make([]uint64, len(events))
	for i, e := range events {
		jsonBuf = e.AppendStored(jsonBuf)
		offsets[i+1] = len(jsonBuf)
		hashes[i] = seriesHash(e)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.dedup.advance(arrivalUs)

	// Time order, so no sample of the batch is out of order against another.
	order := s.order[:0]
	batchMax := int64(math.MinInt64)
	for i, e := range events {
		order = append(order, i)
		batchMax = max(batchMax, e.TimestampMs())
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmpInt64(events[a].Timestamp, events[b].Timestamp)
	})
	s.order = order
	minMs := s.slots.minMs(batchMax)

	type placed struct {
		i    int
		ms   int64
		slot uint8
	}
	place := make([]placed, 0, len(events))
	seen := make(map[string]struct{})
	buf := s.scratch[:0]
	for _, i := range order {
		e := events[i]
		if e.ClientID {
			if _, dup := seen[e.EventID]; dup || s.dedup.contains(e.EventID) {
				results[i].Status = Duplicate
				continue
			}
			seen[e.EventID] = struct{}{}
		}
		ms := e.TimestampMs()
		if ms < minMs {
			results[i] = Result{Status: Rejected, Err: fmt.Errorf("%w (%s)", ErrTooOld, s.opts.OutOfOrderWindow)}
			continue
		}
		at, slot, ok := s.slots.assign(hashes[i], ms)
		if !ok {
			results[i] = Result{Status: Rejected, Err: ErrNoSlot}
			continue
		}
		clientID := ""
		if e.ClientID {
			clientID = e.EventID
		}
		buf = appendRecord(buf, arrivalUs, at, hashes[i], slot, clientID, jsonBuf[offsets[i]:offsets[i+1]])
		place = append(place, placed{i, at, slot})
	}
	s.scratch = buf[:0]
	if len(place) == 0 {
		return results, nil
	}
	s.frame = appendFrame(s.frame[:0], buf)

	end, err := s.log.write(s.frame)
	if err != nil {
		s.slots.prune() // the slots handed out are simply skipped
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if s.opts.SyncInterval == 0 {
		if err := s.log.sync(); err != nil {
			return nil, fmt.Errorf("%w: fsync event log: %w", ErrStorage, err)
		}
	}
	for _, p := range place {
		if e := events[p.i]; e.ClientID {
			s.dedup.add(e.EventID, arrivalUs)
		}
	}
	s.count.Add(int64(len(place)))

	// Shifted events can break time order; re-sort by TSDB time.
	slices.SortStableFunc(place, func(a, b placed) int { return cmpInt64(a.ms, b.ms) })
	app := s.db.AppenderV2(context.Background())
	for _, p := range place {
		if err := s.appendSamples(app, events[p.i], p.ms, p.slot); err != nil {
			// The window check above makes this unreachable; if it happens
			// the event is in the log and the next start replays it.
			s.logger.Error("TSDB did not take a sample", "event_id", events[p.i].EventID, "err", err)
		}
	}
	if err := app.Commit(); err != nil {
		return nil, fmt.Errorf("%w: TSDB commit: %w", ErrStorage, err)
	}
	s.applied = end
	return results, nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Count is the number of events stored.
func (s *Store) Count() int64 { return s.count.Load() }

// DB is the experiment's TSDB, for reading.
func (s *Store) DB() *tsdb.DB { return s.db }

// Scan calls visit for every stored record in log order. Records appended
// while Scan runs are not visited.
func (s *Store) Scan(visit func(*Record) error) error {
	return s.log.readRange(Position{}, s.log.end(), visit)
}

// loop fsyncs the log, records the replay position and expires state.
func (s *Store) loop() {
	defer close(s.done)
	interval := s.opts.SyncInterval
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.tick()
		}
	}
}

func (s *Store) tick() {
	if s.opts.SyncInterval > 0 {
		if err := s.log.sync(); err != nil {
			s.logger.Error("fsync event log", "err", err)
		}
	}
	// The head writes full chunks to disk once a minute; at a high event
	// rate that minute is a lot of memory, so write them every tick.
	s.db.ForceHeadMMap()
	s.mu.Lock()
	applied := s.applied
	s.slots.prune()
	s.dedup.advance(time.Now().UnixMicro())
	s.mu.Unlock()
	if err := s.writeApplied(applied); err != nil {
		s.logger.Error("record TSDB replay position", "err", err)
	}
}

// Close flushes and closes the log and the TSDB. It waits for appends in
// flight.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	applied := s.applied
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	err := s.log.close()
	if cerr := s.closeTSDB(); err == nil {
		err = cerr
	}
	if werr := s.writeApplied(applied); err == nil {
		err = werr
	}
	return err
}

func (s *Store) closeTSDB() error {
	err := s.db.Close()
	s.reg.unregisterAll()
	return err
}

// seriesHash identifies an event's TSDB series (without slot and name).
func seriesHash(e *event.Event) uint64 {
	var d xxhash.Digest
	d.Reset()
	for _, v := range [...]string{e.Condition, e.EventName, e.Model.V, e.Provider.V} {
		_, _ = d.WriteString(v)
		_, _ = d.Write([]byte{0xff})
	}
	return d.Sum64()
}

// Compile-time check that the TSDB implements the appender we use.
var _ storage.AppendableV2 = (*tsdb.DB)(nil)
