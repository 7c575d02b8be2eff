package experiment

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Options configure a Manager.
type Options struct {
	Dir     string            // --storage.path
	Store   tsdbstore.Options // template for every experiment's store
	Metrics *collector.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// MaxEvaluationScores bounds the scores the evaluations store holds
	// (--otlp.max-evaluation-scores); 0: no bound.
	MaxEvaluationScores int64
	// ExternalLabels are the labels every sample carries beyond the
	// sidecar (--remote-write.external-label); archived blocks carry them
	// among their Thanos labels.
	ExternalLabels map[string]string
	// BroadcastUnrouted sends an event that names no experiment to every
	// running experiment (the seed library's behaviour) instead of
	// rejecting it when several run.
	BroadcastUnrouted bool
	// ArchivedIdle is how long the store of an archived experiment stays
	// open after its last read (DefaultArchivedIdle when 0; negative:
	// until the Manager closes).
	ArchivedIdle time.Duration
}

// DefaultArchivedIdle is how long an archived experiment's store stays
// open after a read: long enough for a dashboard's next refresh, short
// enough that reading many archived experiments once does not keep them
// all in memory.
const DefaultArchivedIdle = 5 * time.Minute

// Manager owns every open experiment: their records, their stores, and the
// routing of events to them.
type Manager struct {
	opts   Options
	logger *slog.Logger
	lock   *dirLock
	// evals holds the scores that arrive apart from their events; set by
	// Open, which runs while /metrics may already be read.
	evals atomic.Pointer[evalstore.Store]

	mu          sync.RWMutex
	exps        map[string]*Experiment
	unavailable map[string]*unavailable // experiments whose storage did not open
	ready       atomic.Bool

	// stopIdle ends the loop that closes idle archived stores, which
	// closes idleDone when it ends; idleRunning tells Close to wait for it.
	stopIdle    chan struct{}
	stopOnce    sync.Once
	idleDone    chan struct{}
	idleRunning atomic.Bool
}

// Experiment is one open experiment.
type Experiment struct {
	dir string
	// store is nil for an archived experiment until something reads it:
	// its storage then costs no memory, goroutines or /metrics series.
	store   atomic.Pointer[tsdbstore.Store]
	storeMu sync.Mutex // serialises opening store
	// gone is set, under storeMu, once the experiment is deleted or the
	// Manager closed: its store must not be opened again.
	gone atomic.Bool
	// archivedCount is the event count of an archived experiment whose
	// store is not open, from its record.
	archivedCount atomic.Int64
	// archivedDamage is its log's damage, as its store last knew it.
	archivedDamage atomic.Pointer[tsdbstore.Damage]

	mu  sync.Mutex // guards rec
	rec Record

	// capMu serialises ingest while stop_at_sample_size is in force, so the
	// target is never overshot.
	capMu sync.Mutex
	// archiveMu serialises archiving and deleting.
	archiveMu sync.Mutex
}

// unavailable is an experiment whose record or storage could not be opened:
// it is listed with the reason, its files are left as they are, and the
// other experiments serve.
type unavailable struct {
	dir string
	rec Record // as far as it could be read
	err error
}

// NewManager returns a Manager; call Open to load the stored experiments.
func NewManager(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ArchivedIdle == 0 {
		opts.ArchivedIdle = DefaultArchivedIdle
	}
	return &Manager{opts: opts, logger: opts.Logger, exps: make(map[string]*Experiment), unavailable: map[string]*unavailable{},
		stopIdle: make(chan struct{}), idleDone: make(chan struct{})}
}

func (m *Manager) experimentsDir() string { return filepath.Join(m.opts.Dir, experimentsDir) }

// Open locks the data directory, loads every stored experiment and opens
// its storage. An experiment that cannot be opened is listed as
// unavailable with the reason and the others serve. The Manager is ready
// when Open returns without error; an error means the data directory as a
// whole cannot be used (another process holds it, or it is unreadable).
func (m *Manager) Open() error {
	lock, err := lockDataDir(m.opts.Dir)
	if err != nil {
		return err
	}
	m.lock = lock
	if err := os.MkdirAll(m.experimentsDir(), 0o755); err != nil {
		return err
	}
	if err := openEvaluations(m.opts.Dir, m); err != nil {
		return err
	}
	entries, err := os.ReadDir(m.experimentsDir())
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if !ent.IsDir() || !ValidID(ent.Name()) {
			continue
		}
		dir := filepath.Join(m.experimentsDir(), ent.Name())
		rec, err := m.readRecord(dir)
		if errors.Is(err, errNoRecord) {
			if logEmpty(dir) {
				m.logger.Info("skipping experiment directory without a record or events", "dir", dir)
				continue
			}
			rec.ID, rec.Name = ent.Name(), ent.Name()
		}
		if err == nil && rec.ID != ent.Name() {
			err = fmt.Errorf("%s names experiment %q", recordFile, rec.ID)
			rec = Record{}
		}
		if err == nil {
			err = m.openExperiment(dir, rec)
		}
		if err != nil {
			if rec.ID == "" {
				rec.ID, rec.Name = ent.Name(), ent.Name()
			}
			m.logger.Error("experiment is unavailable: its storage did not open; the others serve", "id", ent.Name(), "dir", dir, "err", err)
			m.mu.Lock()
			m.unavailable[ent.Name()] = &unavailable{dir: dir, rec: rec, err: err}
			m.mu.Unlock()
		}
	}
	if reg := m.opts.Store.Registerer; reg != nil {
		if err := reg.Register(unavailableCollector{m}); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	m.ready.Store(true)
	if m.opts.ArchivedIdle > 0 && m.idleRunning.CompareAndSwap(false, true) {
		go m.closeIdleLoop() // ends at once when Close came first
	}
	return nil
}

// openExperiment opens the storage of an experiment with a readable record.
func (m *Manager) openExperiment(dir string, rec Record) error {
	// A stopped experiment's series come back only within their TTL.
	live := m.opts.Metrics != nil && (rec.StoppedAt == nil || !m.opts.Metrics.Gone(*rec.StoppedAt))
	var visit func(*tsdbstore.LogRecord) error
	if live {
		m.setMetrics(rec, 0)
		visit = m.rebuildMetrics(rec.ID)
	}
	if rec.Status == Archived && !live && rec.EventsStored > 0 {
		m.mu.Lock()
		x := &Experiment{dir: dir, rec: rec}
		x.archivedCount.Store(rec.EventsStored)
		m.exps[rec.ID] = x
		m.mu.Unlock()
		m.logger.Info("opened experiment; its storage opens when it is read", "id", rec.ID, "status", rec.Status, "events", rec.EventsStored)
		return nil
	}
	store, err := m.openStore(dir, rec.Spec, visit)
	if err != nil {
		if live {
			m.opts.Metrics.Remove(rec.ID)
		}
		return err
	}
	if live {
		m.setMetrics(rec, store.Count())
	}
	x := &Experiment{dir: dir, rec: rec}
	x.store.Store(store)
	m.mu.Lock()
	m.exps[rec.ID] = x
	m.mu.Unlock()
	m.logger.Info("opened experiment", "id", rec.ID, "status", rec.Status, "events", store.Count())
	return nil
}

// Ready tells whether every stored experiment is open.
func (m *Manager) Ready() bool { return m.ready.Load() }

func (m *Manager) openStore(dir string, spec Spec, visit func(*tsdbstore.LogRecord) error) (*tsdbstore.Store, error) {
	o := m.opts.Store
	o.Visit = visit
	o.ExperimentID, o.Condition = spec.ID, spec.Condition
	o.Metrics = tsdbstore.MetricsConfig{
		Latency: spec.MetricsConfig.Latency, Cost: spec.MetricsConfig.Cost,
		SuccessRate: spec.MetricsConfig.SuccessRate, Tokens: spec.MetricsConfig.Tokens,
	}
	o.Logger = m.logger.With("experiment_id", spec.ID)
	return tsdbstore.Open(dir, o)
}

func (m *Manager) lookup(id string) (*Experiment, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	m.mu.RLock()
	x, u := m.exps[id], m.unavailable[id]
	m.mu.RUnlock()
	if u != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, u.err)
	}
	if x == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return x, nil
}

// Store returns an experiment's storage, for reading.
func (m *Manager) Store(id string) (*tsdbstore.Store, error) {
	x, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	return m.storeOf(x)
}

// storeOf returns an experiment's store, opening it on its first read.
func (m *Manager) storeOf(x *Experiment) (*tsdbstore.Store, error) {
	// Touched, so that an archived store is not closed as idle before the
	// caller reads it; one closed as idle since it was loaded is opened
	// again below.
	if s := x.store.Load(); s != nil && s.Touch() == nil {
		return s, nil
	}
	x.storeMu.Lock()
	defer x.storeMu.Unlock()
	// Under storeMu a store is open, or closed for good (deleted, or the
	// Manager closed: its reads fail with ErrClosed): closeIdle takes a
	// store it closes away before it lets go of storeMu.
	if s := x.store.Load(); s != nil {
		_ = s.Touch()
		return s, nil
	}
	x.mu.Lock()
	spec := x.rec.Spec
	x.mu.Unlock()
	// A reader that found x before Delete (or Close) must not create its
	// store again, in a removed directory or past the lock's release. Not
	// m.mu: Close holds it while it waits for the readers of other stores,
	// one of which may be the query asking for this one.
	if x.gone.Load() {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, spec.ID)
	}
	s, err := m.openStore(x.dir, spec, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, spec.ID, err)
	}
	x.store.Store(s)
	m.logger.Info("opened the storage of an archived experiment for a read", "id", spec.ID)
	return s, nil
}

// count is the number of events stored, without opening a closed store.
func (x *Experiment) count() int64 {
	if s := x.store.Load(); s != nil {
		return s.Count()
	}
	return x.archivedCount.Load()
}

// damage is the damage of the store's log, none when it is not open.
func (x *Experiment) damage() tsdbstore.Damage {
	if s := x.store.Load(); s != nil {
		return s.Damage()
	}
	if d := x.archivedDamage.Load(); d != nil {
		return *d
	}
	return tsdbstore.Damage{}
}

// Close closes every experiment's storage and releases the data directory.
func (m *Manager) Close() error {
	m.ready.Store(false)
	m.stopOnce.Do(func() { close(m.stopIdle) })
	if m.idleRunning.Load() {
		<-m.idleDone
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	// No store opens from here on: a read that wants one fails, and lets
	// go of those it holds, which Close below waits for.
	for _, x := range m.exps {
		x.storeMu.Lock()
		x.gone.Store(true)
		x.storeMu.Unlock()
	}
	for id, x := range m.exps {
		s := x.store.Load()
		if s == nil {
			continue
		}
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close experiment %s: %w", id, err))
		}
	}
	m.exps = map[string]*Experiment{}
	m.unavailable = map[string]*unavailable{}
	if ev := m.evals.Load(); ev != nil {
		errs = append(errs, ev.Close())
	}
	errs = append(errs, m.lock.release())
	m.lock = nil
	return errors.Join(errs...)
}

// closeIdleLoop closes, every so often, the stores of archived
// experiments that no one read for ArchivedIdle.
func (m *Manager) closeIdleLoop() {
	defer close(m.idleDone)
	every := min(max(m.opts.ArchivedIdle/4, time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stopIdle:
			return
		case <-t.C:
			m.closeIdle()
		}
	}
}

// closeIdle closes the stores of archived experiments idle for
// ArchivedIdle. One being archived or deleted is left for the next round.
func (m *Manager) closeIdle() {
	m.mu.RLock()
	idle := map[string]*Experiment{}
	for id, x := range m.exps {
		x.mu.Lock()
		archived := x.rec.Status == Archived
		x.mu.Unlock()
		if archived && x.store.Load() != nil {
			idle[id] = x
		}
	}
	m.mu.RUnlock()
	for id, x := range idle {
		if !x.archiveMu.TryLock() {
			continue
		}
		x.storeMu.Lock()
		if s := x.store.Load(); s != nil && !x.gone.Load() {
			count, damage := s.Count(), s.Damage() // an archived store takes no events
			closed, err := s.CloseIfIdle(m.opts.ArchivedIdle)
			if closed {
				x.archivedCount.Store(count)
				x.archivedDamage.Store(&damage)
				x.store.Store(nil)
				if err != nil {
					m.logger.Error("closing the idle storage of an archived experiment", "id", id, "err", err)
				} else {
					m.logger.Info("closed the idle storage of an archived experiment", "id", id)
				}
			}
		}
		x.storeMu.Unlock()
		x.archiveMu.Unlock()
	}
}
