package experiment

import (
	"cmp"
	crand "crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Options configure a Manager.
type Options struct {
	Dir     string            // --storage.path
	Store   tsdbstore.Options // template for every experiment's store
	Metrics *collector.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
	// BroadcastUnrouted sends an event that names no experiment to every
	// running experiment (the seed library's behaviour) instead of
	// rejecting it when several run.
	BroadcastUnrouted bool
}

// Manager owns every open experiment: their records, their stores, and the
// routing of events to them.
type Manager struct {
	opts   Options
	logger *slog.Logger
	lock   *dirLock

	mu          sync.RWMutex
	exps        map[string]*Experiment
	unavailable map[string]*unavailable // experiments whose storage did not open
	ready       atomic.Bool
}

// Experiment is one open experiment.
type Experiment struct {
	dir   string
	store *tsdbstore.Store

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
	return &Manager{opts: opts, logger: opts.Logger, exps: make(map[string]*Experiment), unavailable: map[string]*unavailable{}}
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
	entries, err := os.ReadDir(m.experimentsDir())
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if !ent.IsDir() || !IDPattern.MatchString(ent.Name()) {
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
	return nil
}

var unavailableDesc = prometheus.NewDesc("crucible_experiment_storage_unavailable",
	"1 for each experiment whose storage could not be opened; the reason is in its record and the log.", []string{"experiment_id"}, nil)

// unavailableCollector shows the experiments whose storage did not open.
type unavailableCollector struct{ m *Manager }

func (c unavailableCollector) Describe(ch chan<- *prometheus.Desc) { ch <- unavailableDesc }

func (c unavailableCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.RLock()
	defer c.m.mu.RUnlock()
	for id := range c.m.unavailable {
		ch <- prometheus.MustNewConstMetric(unavailableDesc, prometheus.GaugeValue, 1, id)
	}
}

// openExperiment opens the storage of an experiment with a readable record.
func (m *Manager) openExperiment(dir string, rec Record) error {
	// A stopped experiment's series come back only within their TTL.
	live := m.opts.Metrics != nil && (rec.StoppedAt == nil || !m.opts.Metrics.Gone(*rec.StoppedAt))
	var visit func(*tsdbstore.Record) error
	if live {
		m.setMetrics(rec, 0)
		visit = m.rebuildMetrics(rec.ID)
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
	m.mu.Lock()
	m.exps[rec.ID] = &Experiment{dir: dir, store: store, rec: rec}
	m.mu.Unlock()
	m.logger.Info("opened experiment", "id", rec.ID, "status", rec.Status, "events", store.Count())
	return nil
}

// Ready tells whether every stored experiment is open.
func (m *Manager) Ready() bool { return m.ready.Load() }

// setMetrics shows an experiment's state on /metrics.
func (m *Manager) setMetrics(r Record, stored int64) {
	if m.opts.Metrics == nil {
		return
	}
	var target int64
	if r.SampleSize != nil {
		target = *r.SampleSize
	}
	var stoppedAt time.Time
	if r.StoppedAt != nil {
		stoppedAt = *r.StoppedAt
	}
	m.opts.Metrics.Set(collector.Experiment{
		ID: r.ID, Name: r.Name, Condition: r.Condition, Status: string(r.Status), Target: target, Stored: stored,
		StoppedAt: stoppedAt,
	})
}

// rebuildMetrics returns a visitor that counts every stored event into the
// live metrics while the store opens, so counters never go backwards across
// restarts.
func (m *Manager) rebuildMetrics(id string) func(*tsdbstore.Record) error {
	if m.opts.Metrics == nil {
		return nil
	}
	dec := new(event.Decoder)
	var e event.Event
	one := []*event.Event{&e}
	overflow := make([]event.LabelOverflow, 1)
	n := int64(0)
	return func(r *tsdbstore.Record) error {
		if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
			return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
		}
		n++
		overflow[0] = r.Overflow()
		m.opts.Metrics.Observe(id, one, overflow, n)
		return nil
	}
}

func (m *Manager) openStore(dir string, spec Spec, visit func(*tsdbstore.Record) error) (*tsdbstore.Store, error) {
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

// Create creates and starts an experiment. Creating the same experiment
// again returns the existing record with created false; the same id with
// different fields is a conflict.
func (m *Manager) Create(req CreateRequest) (rec Record, created bool, err error) {
	if !m.Ready() {
		return Record{}, false, ErrNotReady
	}
	spec, err := req.Normalize()
	if err != nil {
		return Record{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if x := m.exps[spec.ID]; x != nil {
		r := x.record(m.opts.Now())
		if !sameSpec(r.Spec, spec) {
			return Record{}, false, &StateError{"exists", "experiment " + spec.ID + " exists with different fields"}
		}
		return r, false, nil
	}
	if u := m.unavailable[spec.ID]; u != nil {
		return Record{}, false, &StateError{"exists", fmt.Sprintf("experiment %s exists but its storage is unavailable (%v); its files in %s are kept", spec.ID, u.err, u.dir)}
	}
	dir := filepath.Join(m.experimentsDir(), spec.ID)
	// Only a directory this call creates is removed when the create fails.
	// One that exists without a record is reused only when it holds no
	// events: a create that did not finish left it; events in it belong to
	// an experiment whose record is lost, and are never adopted silently.
	made := true
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		made = false
		if !logEmpty(dir) {
			return Record{}, false, &StateError{"exists", fmt.Sprintf("%s holds the events of an experiment %s whose record is lost; move it away or restore its %s", dir, spec.ID, recordFile)}
		}
	} else if err != nil {
		return Record{}, false, err
	}
	r := Record{Spec: spec, Status: Running, StartedAt: m.opts.Now().UTC()}
	store, err := m.openStore(dir, spec, nil)
	if err == nil {
		err = writeRecord(dir, r)
		if err != nil {
			store.Close()
		}
	}
	if err != nil {
		if made {
			os.RemoveAll(dir)
		}
		return Record{}, false, err
	}
	x := &Experiment{dir: dir, store: store, rec: r}
	m.exps[spec.ID] = x
	m.setMetrics(r, 0)
	m.logger.Info("created experiment", "id", spec.ID, "name", spec.Name, "condition", spec.Condition)
	return x.record(m.opts.Now()), true, nil
}

func (x *Experiment) record(now time.Time) Record {
	x.mu.Lock()
	defer x.mu.Unlock()
	r := x.rec.view(now, x.store.Count())
	r.Storage = healthOf(x.store.Damage())
	return r
}

func healthOf(d tsdbstore.Damage) *Health {
	if d.Frames == 0 {
		return &Health{Status: HealthOK}
	}
	return &Health{Status: HealthDegraded, Error: d.First, CorruptFrames: d.Frames, CorruptBytes: d.Bytes}
}

func (u *unavailable) record() Record {
	r := u.rec
	r.Storage = &Health{Status: HealthUnavailable, Error: u.err.Error()}
	return r
}

// Get returns an experiment's record; that of an experiment whose storage
// is unavailable says why.
func (m *Manager) Get(id string) (Record, error) {
	x, err := m.lookup(id)
	if errors.Is(err, ErrUnavailable) {
		m.mu.RLock()
		u := m.unavailable[id]
		m.mu.RUnlock()
		if u != nil {
			return u.record(), nil
		}
	}
	if err != nil {
		return Record{}, err
	}
	return x.record(m.opts.Now()), nil
}

// List returns the records, newest first, optionally filtered by status and tag.
func (m *Manager) List(status Status, tag string) ([]Record, error) {
	if !m.Ready() {
		return nil, ErrNotReady
	}
	now := m.opts.Now()
	m.mu.RLock()
	out := make([]Record, 0, len(m.exps))
	keep := func(r Record) {
		if (status == "" || r.Status == status) && (tag == "" || slices.Contains(r.Tags, tag)) {
			out = append(out, r)
		}
	}
	for _, x := range m.exps {
		keep(x.record(now))
	}
	for _, u := range m.unavailable {
		keep(u.record())
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b Record) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// transition applies a lifecycle change and persists it.
func (m *Manager) transition(id string, apply func(r *Record, now time.Time) (bool, error)) (Record, error) {
	x, err := m.lookup(id)
	if err != nil {
		return Record{}, err
	}
	now := m.opts.Now().UTC()
	x.mu.Lock()
	next := x.rec
	changed, err := apply(&next, now)
	if err == nil && changed {
		if err = writeRecord(x.dir, next); err == nil {
			x.rec = next
		}
	}
	x.mu.Unlock()
	if err != nil {
		return Record{}, err
	}
	if changed {
		m.setMetrics(next, x.store.Count())
		m.logger.Info("experiment changed state", "id", id, "status", next.Status)
	}
	return x.record(now), nil
}

// Pause moves a running experiment to paused.
func (m *Manager) Pause(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return true, r.pause(now) })
}

// Resume moves a paused experiment to running.
func (m *Manager) Resume(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return true, r.resume(now) })
}

// Stop stops a running or paused experiment; stopping again changes nothing.
func (m *Manager) Stop(id string) (Record, error) {
	return m.transition(id, func(r *Record, now time.Time) (bool, error) { return r.stop(now), nil })
}

// Store returns an experiment's storage, for reading.
func (m *Manager) Store(id string) (*tsdbstore.Store, error) {
	x, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	return x.store, nil
}

// Close closes every experiment's storage and releases the data directory.
func (m *Manager) Close() error {
	m.ready.Store(false)
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for id, x := range m.exps {
		if err := x.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close experiment %s: %w", id, err))
		}
	}
	m.exps = map[string]*Experiment{}
	m.unavailable = map[string]*unavailable{}
	errs = append(errs, m.lock.release())
	m.lock = nil
	return errors.Join(errs...)
}

// Rejection is one event that was not stored, and why.
type Rejection struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// IngestResult counts what happened to a request's events (SPEC §4.1).
type IngestResult struct {
	Accepted       int         `json:"accepted"`
	Duplicates     int         `json:"duplicates"`
	DroppedPaused  int         `json:"dropped_paused"`
	DroppedSampled int         `json:"dropped_sampled"`
	Rejected       []Rejection `json:"rejected"`
	// Unpriced counts accepted events whose model has no price.
	Unpriced int `json:"-"`
}

func (r *IngestResult) reject(i int, msg string) {
	r.Rejected = append(r.Rejected, Rejection{Index: i, Error: msg})
}

type item struct {
	index int
	ev    *event.Event
}

// Ingest routes events to experiments and stores them: to pathID when set,
// else to each event's experiment_id, else to the one running experiment
// (to every running one with BroadcastUnrouted).
// Entries of events that are nil were rejected by the caller. A routed-by-path
// request to an unknown experiment is ErrNotFound, to a stopped one a
// conflict; any other error is a storage failure.
func (m *Manager) Ingest(pathID string, events []*event.Event, now time.Time) (IngestResult, error) {
	res := IngestResult{Rejected: []Rejection{}}
	if !m.Ready() {
		return res, ErrNotReady
	}
	groups := map[*Experiment][]item{}
	var order []*Experiment
	add := func(x *Experiment, it item) {
		if _, ok := groups[x]; !ok {
			order = append(order, x)
		}
		groups[x] = append(groups[x], it)
	}
	if pathID != "" {
		x, err := m.lookup(pathID)
		if err != nil {
			return res, err
		}
		x.mu.Lock()
		st := x.rec.Status
		x.mu.Unlock()
		if st == Stopped || st == Archived {
			return res, &StateError{"not_running", "experiment " + pathID + " is " + string(st) + " and takes no events"}
		}
		for i, e := range events {
			if e != nil {
				add(x, item{i, e})
			}
		}
	} else {
		var running []*Experiment
		m.mu.RLock()
		for i, e := range events {
			if e == nil {
				continue
			}
			if e.ExperimentID != "" {
				if x := m.exps[e.ExperimentID]; x != nil {
					add(x, item{i, e})
				} else if u := m.unavailable[e.ExperimentID]; u != nil {
					res.reject(i, fmt.Sprintf("experiment %s is unavailable: %v", e.ExperimentID, u.err))
				} else {
					res.reject(i, "unknown experiment "+e.ExperimentID)
				}
				continue
			}
			if running == nil {
				running = m.runningLocked()
			}
			if len(running) == 0 {
				res.reject(i, "no experiment_id given and no experiment is running")
				continue
			}
			if len(running) > 1 && !m.opts.BroadcastUnrouted {
				res.reject(i, "no experiment_id given and several experiments are running ("+strings.Join(runningIDs(running), ", ")+"): name one")
				continue
			}
			for j, x := range running {
				ev := e
				if j > 0 {
					c := *e
					ev = &c
				}
				add(x, item{i, ev})
			}
		}
		m.mu.RUnlock()
	}
	for _, x := range order {
		if err := x.ingest(m, groups[x], now, &res); err != nil {
			return res, err
		}
	}
	slices.SortFunc(res.Rejected, func(a, b Rejection) int { return a.Index - b.Index })
	return res, nil
}

func runningIDs(xs []*Experiment) []string {
	ids := make([]string, len(xs))
	for i, x := range xs {
		x.mu.Lock()
		ids[i] = x.rec.ID
		x.mu.Unlock()
	}
	slices.Sort(ids)
	return ids
}

func (m *Manager) runningLocked() []*Experiment {
	out := []*Experiment{}
	for _, x := range m.exps {
		x.mu.Lock()
		if x.rec.Status == Running {
			out = append(out, x)
		}
		x.mu.Unlock()
	}
	return out
}

var sampleSeed = maphash.MakeSeed()

// sampledIn decides whether an event is kept at rate. A client-chosen id
// decides the same way every time, so a retried event is not re-sampled.
func sampledIn(e *event.Event, rate float64) bool {
	if rate >= 1 {
		return true
	}
	var u uint64
	if e.ClientID {
		u = maphash.String(sampleSeed, e.EventID)
	} else {
		u = rand.Uint64()
	}
	return float64(u>>11)/(1<<53) < rate
}

func (x *Experiment) ingest(m *Manager, items []item, now time.Time, res *IngestResult) error {
	x.mu.Lock()
	spec, status := x.rec.Spec, x.rec.Status
	x.mu.Unlock()
	switch status {
	case Paused:
		res.DroppedPaused += len(items)
		return nil
	case Stopped, Archived:
		for _, it := range items {
			res.reject(it.index, "experiment "+spec.ID+" is "+string(status))
		}
		return nil
	}
	kept := items[:0:0]
	for _, it := range items {
		if !sampledIn(it.ev, spec.SamplingRate) {
			res.DroppedSampled++
			continue
		}
		e := it.ev
		spec.Stamp(e)
		e.SampleWeight = 1 / spec.SamplingRate
		kept = append(kept, it)
	}
	if len(kept) == 0 {
		return nil
	}
	if spec.StopAtSampleSize && spec.SampleSize != nil {
		x.capMu.Lock()
		defer x.capMu.Unlock()
		remaining := *spec.SampleSize - x.store.Count()
		if remaining < int64(len(kept)) {
			for _, it := range kept[max(remaining, 0):] {
				res.reject(it.index, fmt.Sprintf("experiment %s reached its sample_size of %d and stopped", spec.ID, *spec.SampleSize))
			}
			kept = kept[:max(remaining, 0)]
		}
	}
	evs := make([]*event.Event, len(kept))
	for i, it := range kept {
		evs[i] = it.ev
	}
	results, err := x.store.Append(evs, now)
	if err != nil {
		return err
	}
	stored := evs[:0:0]
	var overflow []event.LabelOverflow
	for i, r := range results {
		switch r.Status {
		case tsdbstore.Stored:
			stored = append(stored, evs[i])
			overflow = append(overflow, r.Overflow)
			res.Accepted++
			if evs[i].Unpriced {
				res.Unpriced++
			}
		case tsdbstore.Duplicate:
			res.Duplicates++
		case tsdbstore.Rejected:
			res.reject(kept[i].index, r.Err.Error())
		}
	}
	if m.opts.Metrics != nil && len(stored) > 0 {
		m.opts.Metrics.Observe(spec.ID, stored, overflow, x.store.Count())
	}
	if spec.StopAtSampleSize && spec.SampleSize != nil && x.store.Count() >= *spec.SampleSize {
		if _, err := m.Stop(spec.ID); err != nil {
			return err
		}
		m.logger.Info("experiment reached its sample size", "id", spec.ID, "sample_size", *spec.SampleSize)
	}
	return nil
}

// Stream returns an experiment's streaming statistics.
func (m *Manager) Stream(id string) (collector.Stream, error) {
	if _, err := m.lookup(id); err != nil {
		return collector.Stream{}, err
	}
	if m.opts.Metrics == nil {
		return collector.Stream{}, fmt.Errorf("%w: live metrics are off", ErrNotFound)
	}
	s, ok := m.opts.Metrics.Stream(id)
	if !ok {
		return collector.Stream{}, fmt.Errorf("%w: %s has no live metrics (stopped longer than the series TTL)", ErrNotFound, id)
	}
	return s, nil
}

// ResetStream restarts an experiment's streaming statistics.
func (m *Manager) ResetStream(id string) (collector.Stream, error) {
	if _, err := m.lookup(id); err != nil {
		return collector.Stream{}, err
	}
	if m.opts.Metrics == nil || !m.opts.Metrics.ResetStream(id, m.opts.Now()) {
		return collector.Stream{}, fmt.Errorf("%w: %s has no live metrics", ErrNotFound, id)
	}
	return m.Stream(id)
}

// AnonymizeKey returns the data directory's key for anonymized exports,
// creating it on first use: exports of one data directory hash an id the
// same way every time.
func (m *Manager) AnonymizeKey() ([]byte, error) { return AnonymizeKey(m.opts.Dir) }

// AnonymizeKey reads (or creates) the key of a data directory.
func AnonymizeKey(storagePath string) ([]byte, error) {
	path := filepath.Join(storagePath, anonymizeFile)
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	key := make([]byte, 32)
	if _, err := crand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		b, err := os.ReadFile(path) // created meanwhile
		if err == nil && len(b) != 32 {
			err = fmt.Errorf("%s: not a 32-byte key", path)
		}
		return b, err
	}
	if err != nil {
		return nil, err
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	return key, errors.Join(err, f.Close())
}
