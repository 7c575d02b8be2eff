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
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

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
	// FollowBuffer, when > 0, keeps the samples of the newest committed
	// frames in memory, up to this many, for ReadSamples (see feed.go).
	FollowBuffer int
	// Visit, when set, sees every stored record while Open reads the log,
	// so that callers can rebuild state from it without a second pass.
	Visit func(*LogRecord) error
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
	// inReads counts the reads in flight and lastRead is when one last
	// began or ended, or Touch was called: CloseIfIdle's test.
	inReads  int
	lastRead time.Time

	points   *pointIndex
	pointsOK atomic.Bool // the index holds exactly the log's events

	tmu        sync.Mutex                 // serialises TSDB appends and log and index writes
	qmu        sync.Mutex                 // guards queue
	queue      []*pendingBatch            // batches waiting for tmu, committed together (group.go)
	nextQueue  []*pendingBatch            // the queue's other slice, reused; under tmu
	groupFrame []byte                     // a group's frames, written at once; under tmu
	labels     *labelCap                  // under mu
	scoreNames *scoreCap                  // under mu
	written    replayMark                 // the replay position last written, by the housekeeping loop
	applied    atomic.Pointer[replayMark] // every frame before it is committed to the TSDB

	count atomic.Int64

	stop chan struct{}
	done chan struct{}

	cmu   sync.Mutex    // guards moved and follow; taken after mu or tmu
	moved chan struct{} // closed when applied moves (see Committed)
	// follow holds the newest committed frames' samples when FollowBuffer
	// is set; fed collects an append's samples for it, under tmu.
	follow   *feed
	fed      []fedSample
	fedBatch []uint32 // in a group commit, the batch of each sample of fed

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
		dir: dir, opts: opts, logger: opts.Logger, lastRead: time.Now(),
		series: make(map[seriesKey]*seriesRefs),
		stop:   make(chan struct{}), done: make(chan struct{}), moved: make(chan struct{}),
	}
	if opts.FollowBuffer > 0 {
		s.follow = &feed{max: opts.FollowBuffer}
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
	s.scoreNames = newScoreCap(opts.MaxLabelValues, opts.Logger)
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var ev event.Event
	s.log, err = openEventLog(filepath.Join(dir, logDirName), opts.SegmentSize, opts.Logger, func(r *LogRecord) error {
		s.count.Add(1)
		dec.Reset()
		if err := s.labels.learn(r, dec, &ev); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		// Score names are learned until the cap is full; after that no
		// record can have admitted a new one, so none needs decoding.
		if !s.scoreNames.full() && event.RecordHasScores(r.Data) {
			if err := dec.DecodeRecordView(r.Data, &ev, false); err != nil {
				return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
			}
			s.scoreNames.learn(&ev, r.scores)
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

// openTSDB opens (or creates) the experiment's TSDB.
func (s *Store) openTSDB() error {
	s.tsdbReg = newUnregisterer(s.reg)
	if !s.opts.DetailedTSDBMetrics {
		s.tsdbReg.only = make(map[string]bool)
		for _, n := range TSDBHealthMetrics {
			s.tsdbReg.only[n] = true
		}
	}
	tsdbOpts := tsdbOptions(s.opts)
	db, err := tsdb.Open(filepath.Join(s.dir, tsdbDir), s.logger.With("component", "tsdb"), s.tsdbReg, tsdbOpts, nil)
	if err != nil {
		s.tsdbReg.unregisterAll()
		return fmt.Errorf("open TSDB: %w", err)
	}
	s.db = db
	return nil
}

// tsdbOptions are the options of an experiment's TSDB.
func tsdbOptions(opts Options) *tsdb.Options {
	o := tsdb.DefaultOptions()
	o.OutOfOrderTimeWindow = opts.OutOfOrderWindow.Milliseconds()
	o.RetentionDuration = opts.Retention.Milliseconds()
	o.WALCompression = compression.Snappy
	// Batches from concurrent clients interleave in time, so many samples go
	// out of order; larger out-of-order chunks mean fewer chunks to track.
	o.OutOfOrderCapMax = 255
	// Write full head chunks from a queue, so that cutting (and fsyncing) a
	// chunk file never happens while a series is locked against appends.
	o.HeadChunksWriteQueueSize = 10000
	return o
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

// Close flushes and closes the log and the TSDB. It waits for appends and
// reads in flight.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return s.shut()
}

// Touch counts as a read, for CloseIfIdle, without reading; ErrClosed
// once the store is closed. A caller that hands the store to a reader
// touches it first, so that it is not closed as idle in between.
func (s *Store) Touch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.lastRead = time.Now()
	return nil
}

// CloseIfIdle closes a store that takes no appends (an archived
// experiment's) when no read is in flight and none began, ended or
// touched it for idle. It tells whether it closed the store; a read that
// begins afterwards fails with ErrClosed.
func (s *Store) CloseIfIdle(idle time.Duration) (bool, error) {
	s.mu.Lock()
	if s.closed || s.inReads > 0 || time.Since(s.lastRead) < idle {
		s.mu.Unlock()
		return false, nil
	}
	s.closed = true
	s.mu.Unlock()
	return true, s.shut()
}

// shut closes a store marked closed.
func (s *Store) shut() error {
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

// LogDir is the directory of the event log.
func (s *Store) LogDir() string { return filepath.Join(s.dir, logDirName) }
