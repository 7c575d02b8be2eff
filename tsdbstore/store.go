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
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Errors of Append, classified with errors.Is.
var (
	ErrTooOld  = errors.New("event is older than the TSDB's out-of-order window")
	ErrNoSlot  = errors.New("no free TSDB slot for this event")
	ErrClosed  = errors.New("store is closed")
	ErrStorage = errors.New("storage failure")
	// ErrIndexDamaged: see Points.
	ErrIndexDamaged = errors.New("points index is damaged")
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
	DedupMaxIDs      int // ids remembered at most (DefaultDedupMaxIDs when 0); the oldest go first
	SegmentSize      int64
	Metrics          MetricsConfig
	Registerer       prometheus.Registerer // wrapped with experiment_id here
	Logger           *slog.Logger
	// MaxLabelValues caps the distinct values of each of the event, model
	// and provider labels (DefaultMaxLabelValues when 0); later values are
	// stored under event.OverflowValue.
	MaxLabelValues int
	// DetailedTSDBMetrics registers every metric of the TSDB, not only
	// TSDBHealthMetrics.
	DetailedTSDBMetrics bool
	// Visit, when set, sees every stored record while Open reads the log,
	// so that callers can rebuild state from it without a second pass.
	Visit func(*Record) error
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
	// Overflow is the label-cap decision of a stored event, for the live
	// metrics to follow.
	Overflow event.LabelOverflow
}

// Store is one experiment's event log and TSDB. Its methods are safe for
// concurrent use; appends are serialised.
type Store struct {
	dir    string
	opts   Options
	logger *slog.Logger
	log    *eventLog
	db     *tsdb.DB
	reg    *unregisterer // the store's metrics, experiment_id added
	// tsdbReg holds the TSDB's metrics, removed when it closes (also for a
	// rebuild): two TSDBs on one registerer would collide.
	tsdbReg *unregisterer

	mu     sync.Mutex // guards the fields below
	slots  *slotTracker
	dedup  *dedupSet
	series map[seriesKey]*seriesRefs
	closed bool
	active sync.WaitGroup // appends past their first step
	reads  sync.WaitGroup // reads in flight (see beginRead)

	points   *pointIndex
	pointsOK atomic.Bool // the index holds exactly the log's events

	tmu     sync.Mutex                 // serialises TSDB appends and log and index writes
	labels  *labelCap                  // under mu
	written replayMark                 // the replay position last written, by the housekeeping loop
	applied atomic.Pointer[replayMark] // every frame before it is committed to the TSDB

	count atomic.Int64

	stop chan struct{}
	done chan struct{}

	cmu   sync.Mutex    // guards moved
	moved chan struct{} // closed when applied moves (see Committed)

	// failCommit, set by tests, fails a commit as a full disk would.
	failCommit func() error
}

// Files of a store's directory.
const (
	appliedFile = "tsdb.applied"
	tsdbDir     = "tsdb"
	logDirName  = "events"
)

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
		stop:   make(chan struct{}), done: make(chan struct{}), moved: make(chan struct{}),
	}
	s.reg = newUnregisterer(prometheus.WrapRegistererWith(prometheus.Labels{"experiment_id": opts.ExperimentID}, opts.Registerer))
	if err := s.openTSDB(); err != nil {
		s.reg.unregisterAll()
		return nil, err
	}
	db := s.db
	var err error
	headMax := db.Head().MaxTime()
	for _, b := range db.Blocks() {
		headMax = max(headMax, b.Meta().MaxTime-1)
	}
	if headMax == math.MinInt64 {
		headMax = math.MinInt64 / 2 // empty: no bound yet
	}
	now := time.Now().UnixMicro()
	s.slots = newSlotTracker(opts.OutOfOrderWindow.Milliseconds(), headMax)
	s.dedup = newDedupSet(opts.DedupWindow.Microseconds(), opts.DedupMaxIDs, opts.Logger)
	s.reg.MustRegister(s.dedup.collectors()...)
	s.dedup.advance(now)
	dedupFrom := now - opts.DedupWindow.Microseconds()

	var recs []slotMark
	s.labels = newLabelCap(opts.MaxLabelValues, opts.Logger)
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var ev event.Event
	s.log, err = openEventLog(filepath.Join(dir, logDirName), opts.SegmentSize, opts.Logger, func(r *Record) error {
		s.count.Add(1)
		dec.Reset()
		if err := s.labels.learn(r, dec, &ev); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		if r.ClientID != "" && r.ArrivalUs >= dedupFrom {
			s.dedup.add(r.ClientID, r.ArrivalUs)
		}
		recs = append(recs, slotMark{r.SeriesHash, r.Ms, r.Slot})
		if len(recs) >= 1<<16 {
			recs = s.markSlots(recs)
		}
		if opts.Visit != nil {
			return opts.Visit(r)
		}
		return nil
	})
	if err != nil {
		s.closeTSDB()
		s.reg.unregisterAll()
		return nil, fmt.Errorf("open event log: %w", err)
	}
	s.markSlots(recs)
	if err := s.openDerived(); err != nil {
		if s.points != nil {
			s.points.close()
		}
		s.log.close()
		s.closeTSDB()
		s.reg.unregisterAll()
		return nil, err
	}
	s.registerDamage()
	go s.loop()
	return s, nil
}

// openDerived brings the points index and the TSDB up to the log: each is
// checked against it and rebuilt from it when it does not match.
func (s *Store) openDerived() error {
	var err error
	if s.points, err = openPointIndex(s.dir); err != nil {
		return fmt.Errorf("open points index: %w", err)
	}
	if reason := s.points.check(s.count.Load()); reason != nil {
		s.logger.Warn("the points index does not match the event log; rebuilding it from the log", "reason", reason)
		if err := s.rebuildPoints(); err != nil {
			return fmt.Errorf("rebuild points index: %w", err)
		}
	}
	s.pointsOK.Store(true)
	if err := s.replay(s.readApplied()); err != nil {
		return err
	}
	return s.verifyTSDB()
}

// openTSDB opens (or creates) the experiment's TSDB.
func (s *Store) openTSDB() error {
	s.tsdbReg = newUnregisterer(s.reg)
	if !s.opts.DetailedTSDBMetrics {
		s.tsdbReg.only = make(map[string]bool)
		for _, n := range TSDBHealthMetrics {
			s.tsdbReg.only[n] = true
		}
	}
	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.OutOfOrderTimeWindow = s.opts.OutOfOrderWindow.Milliseconds()
	tsdbOpts.RetentionDuration = s.opts.Retention.Milliseconds()
	tsdbOpts.WALCompression = compression.Snappy
	// Batches from concurrent clients interleave in time, so many samples go
	// out of order; larger out-of-order chunks mean fewer chunks to track.
	tsdbOpts.OutOfOrderCapMax = 255
	// Write full head chunks from a queue, so that cutting (and fsyncing) a
	// chunk file never happens while a series is locked against appends.
	tsdbOpts.HeadChunksWriteQueueSize = 10000
	db, err := tsdb.Open(filepath.Join(s.dir, tsdbDir), s.logger.With("component", "tsdb"), s.tsdbReg, tsdbOpts, nil)
	if err != nil {
		s.tsdbReg.unregisterAll()
		return fmt.Errorf("open TSDB: %w", err)
	}
	s.db = db
	return nil
}

// registerDamage shows the event log's damage on /metrics.
func (s *Store) registerDamage() {
	d := s.log.Damage()
	for _, g := range []struct {
		name, help string
		v          int64
	}{
		{"crucible_event_log_corrupt_frames", "Damaged regions of the experiment's event log that reads skip (each usually one frame of events); 0 when the log is whole.", d.Frames},
		{"crucible_event_log_corrupt_bytes", "Bytes of the experiment's event log that reads skip as damaged.", d.Bytes},
	} {
		v := float64(g.v)
		_ = s.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, func() float64 { return v }))
	}
}

// Damage reports the damaged parts of the event log that reads skip.
func (s *Store) Damage() Damage { return s.log.Damage() }

// verifyTSDB checks that the TSDB holds exactly the samples of the logged
// events, and rebuilds it from the log when it does not: the log is the
// source of truth, and a TSDB can lose samples (its directory deleted, a WAL
// repair) or hold some the log no longer has (skipped damage). Retention
// deletes samples on purpose, so with retention only the log is trusted
// and no count is compared.
func (s *Store) verifyTSDB() error {
	if s.opts.Retention > 0 {
		return nil
	}
	want := s.applied.Load().Samples
	have, err := s.countSamples()
	if err != nil {
		return fmt.Errorf("count TSDB samples: %w", err)
	}
	if have == want {
		return nil
	}
	start := time.Now()
	s.logger.Warn("the TSDB does not match the event log; rebuilding it from the log",
		"tsdb_samples", have, "log_samples", want)
	if err := s.closeTSDB(); err != nil {
		return fmt.Errorf("close TSDB for rebuild: %w", err)
	}
	// The TSDB is derived data of this store: the log rebuilds all of it.
	if err := os.RemoveAll(filepath.Join(s.dir, tsdbDir)); err != nil {
		return fmt.Errorf("remove TSDB for rebuild: %w", err)
	}
	s.series = make(map[seriesKey]*seriesRefs)
	if err := s.openTSDB(); err != nil {
		return err
	}
	if err := s.replay(replayMark{}); err != nil {
		return err
	}
	if have, err = s.countSamples(); err != nil {
		return fmt.Errorf("count TSDB samples: %w", err)
	}
	want = s.applied.Load().Samples
	if have != want {
		return fmt.Errorf("%w: the TSDB rebuilt from the event log holds %d samples, the log's events %d", ErrStorage, have, want)
	}
	s.logger.Info("rebuilt the TSDB from the event log", "samples", have, "duration", time.Since(start))
	return nil
}

// countSamples counts every sample in the TSDB.
func (s *Store) countSamples() (int64, error) {
	q, err := s.db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		return 0, err
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+"))
	var n int64
	var it chunkenc.Iterator
	for ss.Next() {
		it = ss.At().Iterator(it)
		for it.Next() != chunkenc.ValNone {
			n++
		}
		if err := it.Err(); err != nil {
			return n, err
		}
	}
	return n, ss.Err()
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

// replayMark is the replay position: every frame before it is committed
// to the TSDB, and those frames' events have Samples samples.
type replayMark struct {
	Position
	Samples int64
	// Damaged is how many damaged log regions were known when Samples was
	// counted: once more are found, the count is redone from the log.
	Damaged int64
}

func (s *Store) readApplied() replayMark {
	var m struct {
		Position
		Samples *int64
		Damaged int64
	}
	b, err := os.ReadFile(filepath.Join(s.dir, appliedFile))
	if err != nil || json.Unmarshal(b, &m) != nil || m.Samples == nil || m.Segment < 0 || m.Offset < 0 ||
		m.Damaged != s.log.Damage().Frames {
		return replayMark{} // replay everything: re-appending is harmless
	}
	return replayMark{m.Position, *m.Samples, m.Damaged}
}

func (s *Store) writeApplied(m replayMark) error {
	b, _ := json.Marshal(m)
	tmp := filepath.Join(s.dir, appliedFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, appliedFile)); err != nil {
		return err
	}
	return syncFile(s.dir) // the rename itself
}

// rebuildPoints writes the points index anew from the log.
func (s *Store) rebuildPoints() error {
	start := time.Now()
	had := s.points.count
	if err := s.points.reset(); err != nil {
		return err
	}
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	batch := make([]event.Event, 0, 4096)
	ptrs := make([]*event.Event, 0, 4096)
	flush := func() error {
		ptrs = ptrs[:0]
		for i := range batch {
			ptrs = append(ptrs, &batch[i])
		}
		err := s.points.add(ptrs)
		batch = batch[:0]
		return err
	}
	err := s.log.readRange(Position{}, s.log.end(), func(r *Record) error {
		batch = batch[:len(batch)+1]
		if err := dec.DecodeRecord(r.Data, &batch[len(batch)-1], false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = s.points.sync()
	}
	if err == nil {
		s.logger.Info("rebuilt the points index from the event log", "events", s.points.count, "had", had, "duration", time.Since(start))
	}
	return err
}

// Points calls visit for what the analysis needs of every stored event, in
// log order, from the points index (or, should it have failed, the log).
// When it meets damage in the index mid-way it returns ErrIndexDamaged:
// visit has then seen part of the events, and a call again reads the log.
func (s *Store) Points(ctx context.Context, visit func(*Point) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.reads.Done()
	s.tmu.Lock()
	n, names, ok := s.points.count, s.points.list, s.pointsOK.Load()
	s.tmu.Unlock()
	if !ok {
		return PointsFromLog(func(v func(*Record) error) error { return s.scan(ctx, v) }, visit)
	}
	err := s.points.read(n, names, cancellable(ctx, visit))
	if errors.Is(err, ErrCorrupt) {
		s.pointsOK.Store(false)
		s.logger.Error("the points index is damaged; reading the event log instead until the next start rebuilds it", "err", err)
		return fmt.Errorf("%w: %w", ErrIndexDamaged, err)
	}
	return err
}

// beginRead starts a read that holds the store open: Close waits for it,
// and once Close has begun no read starts. Callers end it with reads.Done.
func (s *Store) beginRead() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.reads.Add(1)
	return nil
}

// cancellable wraps visit so that a long read stops soon after ctx is done.
func cancellable[T any](ctx context.Context, visit func(T) error) func(T) error {
	if ctx.Done() == nil {
		return visit
	}
	n := 0
	return func(v T) error {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return visit(v)
	}
}

// PointsFromLog calls visit with the point of every record that scan (a
// Store's Scan, or ReadLog on a directory) yields.
func PointsFromLog(scan func(func(*Record) error) error, visit func(*Point) error) error {
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var e event.Event
	var p Point
	return scan(func(r *Record) error {
		if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		p = PointOf(&e)
		return visit(&p)
	})
}

// PointOf is what the points index keeps of e.
func PointOf(e *event.Event) Point {
	p := Point{TimestampUs: e.Timestamp, LatencyMs: math.NaN(), CostUSD: math.NaN(),
		Judged: e.Success.Valid, Success: e.Success.V, Event: e.EventName, Model: e.Model.V, Provider: e.Provider.V}
	if e.LatencyMs.Valid {
		p.LatencyMs = e.LatencyMs.V
	}
	if e.CostUSD.Valid {
		p.CostUSD = e.CostUSD.V
	}
	if t := e.Tokens; t != nil {
		p.HasTokens, p.Prompt, p.Completion, p.Total = true, t.Prompt.V, t.Completion.V, t.Total.V
	}
	return p
}

// replay appends the samples of every log record after from to the TSDB.
func (s *Store) replay(from replayMark) error {
	end := s.log.end()
	if end.Less(from.Position) {
		// The log ends before what the TSDB was said to hold (a write lost
		// in a power cut): count from the start.
		from = replayMark{}
	}
	if !from.Less(end) {
		s.applied.Store(&from)
		s.written = from
		return nil
	}
	start := time.Now()
	app := s.db.AppenderV2(context.Background())
	n := 0
	samples := from.Samples
	var ev event.Event
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	err := s.log.readRange(from.Position, end, func(r *Record) error {
		if err := dec.DecodeRecord(r.Data, &ev, false); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		k, err := s.appendSamples(app, &ev, r.Ms, s.refsFor(stored(s.opts.Condition, &ev, r.Flags), r.Slot))
		samples += int64(k)
		if err != nil {
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
	if n > 0 {
		s.logger.Info("replayed event log into TSDB", "events", n, "duration", time.Since(start))
	}
	if err := syncWriteAheadLogs(filepath.Join(s.dir, tsdbDir)); err != nil {
		return fmt.Errorf("replay event log into TSDB: %w", err)
	}
	mark := replayMark{end, samples, s.log.Damage().Frames}
	s.applied.Store(&mark)
	s.written = mark
	return s.writeApplied(mark)
}

// appendBuffers are the scratch space of one Append.
type appendBuffers struct{ json, records, frame []byte }

var bufferPool = sync.Pool{New: func() any { return new(appendBuffers) }}

// placed is an accepted event with its TSDB time, slot and series.
type placed struct {
	i     int
	ms    int64
	slot  uint8
	flags uint8 // which labels overflowed
	refs  *seriesRefs
}

// Append stores events that arrived at arrival. Events must be fully
// enriched. The result has one entry per event. A non-nil error means a
// storage failure: no event of the batch is acknowledged.
//
// Under the store lock Append drops duplicates, checks the out-of-order
// window and hands out slots; it encodes and compresses the records without
// a lock; then, under the TSDB lock, it appends the samples, writes the log
// frame and commits. TSDB appends are serialised on purpose: with
// concurrent appenders sharing series, the live head (v0.316.0) lost sight
// of about 0.2% of committed out-of-order samples until a restart
// (TestConcurrentAppends caught it).
func (s *Store) Append(events []*event.Event, arrival time.Time) ([]Result, error) {
	results := make([]Result, len(events))
	if len(events) == 0 {
		return results, nil
	}
	arrivalUs := arrival.UnixMicro()
	hashes := make([]uint64, len(events))
	order := make([]int, len(events))
	for i := range events {
		order[i] = i
	}
	// Time order, so no sample of the batch is out of order against another.
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(events[a].Timestamp, events[b].Timestamp) })

	place := make([]placed, 0, len(events))
	var reserved []string
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.dedup.advance(arrivalUs)
	// The window is measured from the newest event stored before this
	// batch: the batch is appended in time order, so an event far older
	// than a later one of the same batch is no trouble for the TSDB.
	minMs := s.slots.minMs()
	for _, i := range order {
		e := events[i]
		if e.ClientID && s.dedup.contains(e.EventID) {
			results[i].Status = Duplicate
			continue
		}
		ms := e.TimestampMs()
		if ms < minMs {
			results[i] = tooOld(s.opts.OutOfOrderWindow)
			continue
		}
		lbls, flags := s.labels.place(s.opts.Condition, e)
		hashes[i] = seriesHash(lbls)
		at, slot, ok := s.slots.assign(hashes[i], ms)
		if !ok {
			results[i] = Result{Status: Rejected, Err: ErrNoSlot}
			continue
		}
		if e.ClientID {
			s.dedup.add(e.EventID, arrivalUs) // reserved now, released on failure
			reserved = append(reserved, e.EventID)
		}
		place = append(place, placed{i, at, slot, flags, s.refsFor(lbls, slot)})
	}
	if len(place) == 0 {
		s.mu.Unlock()
		return results, nil
	}
	s.active.Add(1)
	s.mu.Unlock()
	defer s.active.Done()

	release := func(ids []string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range ids {
			s.dedup.remove(id)
		}
	}
	bufs := bufferPool.Get().(*appendBuffers)
	defer bufferPool.Put(bufs)
	// Shifted events can break time order; sort by TSDB time.
	slices.SortStableFunc(place, func(a, b placed) int { return cmp.Compare(a.ms, b.ms) })
	s.encodeFrame(bufs, events, place, hashes, arrivalUs)

	s.tmu.Lock()
	defer s.tmu.Unlock()
	app := s.db.AppenderV2(context.Background())
	samples, refused := s.appendAll(app, events, place)
	if len(refused) > 0 {
		// The TSDB moved on since the window check (another append brought
		// newer events): reject what it refused and encode the rest again.
		_ = app.Rollback()
		var ids []string
		kept := place[:0]
		for _, p := range place {
			if _, bad := refused[p.i]; !bad {
				kept = append(kept, p)
				continue
			}
			results[p.i] = tooOld(s.opts.OutOfOrderWindow)
			if events[p.i].ClientID {
				ids = append(ids, events[p.i].EventID)
			}
		}
		release(ids)
		place = kept
		if len(place) == 0 {
			return results, nil
		}
		s.encodeFrame(bufs, events, place, hashes, arrivalUs)
		app = s.db.AppenderV2(context.Background())
		if samples, refused = s.appendAll(app, events, place); len(refused) > 0 {
			_ = app.Rollback()
			release(reserved)
			return nil, fmt.Errorf("%w: the TSDB refused %d events twice", ErrStorage, len(refused))
		}
	}
	// An error from here on means nothing of the batch is stored: the frame
	// is taken back out of the log, and the TSDB commits only after the log
	// holds the frame (durably, when every answer waits for an fsync).
	if err := s.log.write(bufs.frame); err != nil {
		_ = app.Rollback()
		release(reserved)
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	fail := func(err error) ([]Result, error) {
		if uerr := s.log.undo(s.opts.SyncInterval == 0); uerr != nil {
			s.logger.Error("could not take a failed batch back out of the event log; it may come back after a restart", "err", uerr)
		}
		release(reserved)
		return nil, err
	}
	if s.opts.SyncInterval == 0 {
		if err := s.log.sync(); err != nil {
			_ = app.Rollback()
			return fail(fmt.Errorf("%w: fsync event log: %w", ErrStorage, err))
		}
	}
	if err := s.commit(app); err != nil {
		return fail(fmt.Errorf("%w: TSDB commit: %w", ErrStorage, err))
	}
	s.log.publish()
	s.count.Add(int64(len(place)))
	for _, p := range place {
		results[p.i].Overflow = overflowOf(p.flags)
	}
	mark := replayMark{s.log.end(), s.applied.Load().Samples + int64(samples), s.applied.Load().Damaged}
	s.applied.Store(&mark)
	s.announce()
	if s.pointsOK.Load() {
		ordered := make([]*event.Event, len(place))
		for i, p := range place {
			ordered[i] = events[p.i]
		}
		if err := s.points.add(ordered); err != nil {
			// Reads fall back to the log; the next start rebuilds the index.
			s.pointsOK.Store(false)
			s.logger.Error("points index write failed; reading the log instead", "err", err)
		}
	}
	return results, nil
}

// commit commits an append, unless a test makes it fail.
func (s *Store) commit(app storage.AppenderV2) error {
	if s.failCommit != nil {
		if err := s.failCommit(); err != nil {
			_ = app.Rollback()
			return err
		}
	}
	return app.Commit()
}

func tooOld(window time.Duration) Result {
	return Result{Status: Rejected, Err: fmt.Errorf("%w (%s)", ErrTooOld, window)}
}

// encodeFrame encodes the placed events as one compressed log frame.
func (s *Store) encodeFrame(bufs *appendBuffers, events []*event.Event, place []placed, hashes []uint64, arrivalUs int64) {
	bufs.records = bufs.records[:0]
	for _, p := range place {
		e := events[p.i]
		clientID := ""
		if e.ClientID {
			clientID = e.EventID
		}
		bufs.json = e.AppendRecord(bufs.json[:0], e.Raw)
		bufs.records = appendRecord(bufs.records, arrivalUs, p.ms, hashes[p.i], p.slot, p.flags, clientID, bufs.json)
	}
	bufs.frame = appendFrame(bufs.frame[:0], bufs.records)
}

// appendAll appends the samples of the placed events and returns how many
// there are and the events the TSDB refused.
func (s *Store) appendAll(app storage.AppenderV2, events []*event.Event, place []placed) (int, map[int]error) {
	var refused map[int]error
	samples := 0
	for _, p := range place {
		n, err := s.appendSamples(app, events[p.i], p.ms, p.refs)
		samples += n
		if err != nil {
			if refused == nil {
				refused = make(map[int]error)
			}
			refused[p.i] = err
		}
	}
	return samples, refused
}

// Count is the number of events stored.
func (s *Store) Count() int64 { return s.count.Load() }

// DB is the experiment's TSDB, for reading.
func (s *Store) DB() *tsdb.DB { return s.db }

// Scan calls visit for every stored record in log order. Records appended
// while Scan runs are not visited. The store stays open until Scan returns;
// it stops with ctx's error once ctx is done.
func (s *Store) Scan(ctx context.Context, visit func(*Record) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.reads.Done()
	return s.scan(ctx, visit)
}

func (s *Store) scan(ctx context.Context, visit func(*Record) error) error {
	return s.log.readRange(Position{}, s.log.end(), cancellable(ctx, visit))
}

// housekeepingInterval paces the store's background work.
const housekeepingInterval = time.Second

// loop fsyncs the log every sync interval and, every second, closes full
// log segments, moves full head chunks to disk, records the replay position
// and expires state.
func (s *Store) loop() {
	defer close(s.done)
	t := time.NewTicker(housekeepingInterval)
	defer t.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if s.opts.SyncInterval > 0 && now.Sub(lastSync) >= s.opts.SyncInterval {
				if err := s.log.sync(); err != nil {
					s.logger.Error("fsync event log", "err", err)
				}
				if err := s.points.sync(); err != nil {
					s.logger.Error("fsync points index", "err", err)
				}
				lastSync = now
			}
			s.tick()
		}
	}
}

func (s *Store) tick() {
	if err := s.log.closeRetired(); err != nil {
		s.logger.Error("close full event log segments", "err", err)
	}
	// The head writes full chunks to disk once a minute; at a high event
	// rate that minute is a lot of memory, so write them every tick.
	s.db.ForceHeadMMap()
	s.mu.Lock()
	s.slots.prune()
	s.dedup.advance(time.Now().UnixMicro())
	s.mu.Unlock()
	s.recordApplied()
}

// recordApplied writes the replay position once what it claims is on
// disk: the TSDB's write-ahead logs are fsynced first, so that after a
// power loss a replay never starts past samples the TSDB lost.
func (s *Store) recordApplied() {
	applied := *s.applied.Load()
	if applied == s.written {
		return
	}
	if err := syncWriteAheadLogs(filepath.Join(s.dir, tsdbDir)); err != nil {
		s.logger.Error("fsync the TSDB's write-ahead log", "err", err)
		return
	}
	if err := s.writeApplied(applied); err != nil {
		s.logger.Error("record TSDB replay position", "err", err)
		return
	}
	s.written = applied
}

// syncWriteAheadLogs fsyncs the newest segments of the TSDB's WAL and of
// its out-of-order WBL: the TSDB writes each commit to them but fsyncs a
// segment only when it is full. The two newest, as a segment may just have
// been cut.
func syncWriteAheadLogs(tsdbDir string) error {
	for _, sub := range []string{"wal", "wbl"} {
		dir := filepath.Join(tsdbDir, sub)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, name := range newestSegments(entries, 2) {
			if err := syncFile(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// newestSegments are the names of the n highest-numbered segment files.
func newestSegments(entries []fs.DirEntry, n int) []string {
	var segs []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() {
			segs = append(segs, e.Name())
		}
	}
	slices.SortFunc(segs, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b)) })
	return segs[max(0, len(segs)-n):]
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
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
	s.mu.Unlock()
	s.active.Wait()
	s.reads.Wait()
	close(s.stop)
	<-s.done
	applied := *s.applied.Load()
	err := errors.Join(s.log.close(), s.points.close())
	if cerr := s.closeTSDB(); err == nil {
		err = cerr
	}
	if werr := s.writeApplied(applied); err == nil {
		err = werr
	}
	s.reg.unregisterAll()
	return err
}

func (s *Store) closeTSDB() error {
	err := s.db.Close()
	s.tsdbReg.unregisterAll()
	return err
}

// Compile-time check that the TSDB implements the appender we use.
var _ storage.AppendableV2 = (*tsdb.DB)(nil)

// Snapshot writes the TSDB's data as standard blocks into dir: the
// out-of-order head is compacted into blocks first, so that the snapshot
// holds every sample.
func (s *Store) Snapshot(dir string) error {
	s.tmu.Lock() // no append may slip in between the two steps
	defer s.tmu.Unlock()
	if err := s.db.CompactOOOHead(context.Background()); err != nil {
		return fmt.Errorf("compact the out-of-order head: %w", err)
	}
	return s.db.Snapshot(dir, true)
}

// Sync fsyncs the event log and the points index.
func (s *Store) Sync() error { return errors.Join(s.log.sync(), s.points.sync()) }

// LogDir is the directory of the event log.
func (s *Store) LogDir() string { return filepath.Join(s.dir, logDirName) }
