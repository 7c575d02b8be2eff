// Package remotewrite sends every raw sample of every experiment to
// receivers with Prometheus remote-write 1.0 (SPEC §16).
//
// Each receiver has a queue that follows the experiments' committed
// samples from a position it keeps on disk (see positions.go): the event
// log is the queue's buffer, so ingest never waits for a receiver and a
// receiver that was down, or a sidecar that restarted, gets every sample
// afterwards. The queue's memory is bounded by max_shards requests of
// max_samples_per_send samples.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Target is an experiment whose committed samples the queues follow.
type Target interface {
	ID() string
	// Created is when the experiment was created: one deleted and made
	// again under its id has another log, read from its start.
	Created() time.Time
	// Final tells whether the experiment takes no more events, and how
	// many it holds, without opening its store.
	Final() (bool, int64)
	// Store opens the experiment's store if it is not open.
	Store() (*tsdbstore.Store, error)
}

// Options configure a Writer.
type Options struct {
	// Dir keeps the queues' positions (<storage.path>/remote-write).
	Dir string
	// Targets lists the experiments; an error (not ready yet) skips a pass.
	Targets func() ([]Target, error)
	// ExternalLabels are added to every series sent.
	ExternalLabels labels.Labels
	Registerer     prometheus.Registerer
	Logger         *slog.Logger
	// Poll is how often an idle queue looks for new samples (100ms when 0).
	Poll time.Duration
}

// Writer runs one queue per receiver.
type Writer struct {
	o Options
	m metrics

	mu      sync.Mutex // serialises Start, Apply and Stop
	stopped bool
	queues  []*queue
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks the configuration and opens the queues' positions; Start
// starts sending.
func New(cfg *Config, o Options) (*Writer, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	var err error
	o.ExternalLabels.Range(func(l labels.Label) {
		if slices.Contains(tsdbstore.SeriesLabelNames, l.Name) {
			err = fmt.Errorf("external label %q: the sidecar's samples carry a label of that name", l.Name)
		}
	})
	if err != nil {
		return nil, err
	}
	w := &Writer{o: o, m: newMetrics(o.Registerer)}
	setups, err := w.setUp(cfg, nil)
	if err != nil {
		return nil, err
	}
	for _, su := range setups {
		w.queues = append(w.queues, w.queueOf(su))
	}
	return w, nil
}

// setup is what a receiver's queue needs that can fail: its client and
// its positions.
type setup struct {
	ep     *Endpoint
	client *client
	pos    *positions
}

// setUp sets up the receivers of cfg without touching anything running:
// a receiver of a running queue (in running, by URL) takes over its
// positions once that queue has stopped; the others open theirs.
func (w *Writer) setUp(cfg *Config, running map[string]*queue) ([]setup, error) {
	var out []setup
	for _, e := range cfg.RemoteWrite {
		c, err := newClient(e)
		if err != nil {
			return nil, fmt.Errorf("remote_write %s: %w", e.URL.Redacted(), err)
		}
		su := setup{ep: e, client: c}
		if q := running[e.URL.String()]; q != nil {
			su.pos = q.pos // its goroutine's until it stops
		} else if su.pos, err = openPositions(queueDir(w.o.Dir, e.URL.String()), e.URL.Redacted(), w.o.Logger); err != nil {
			return nil, fmt.Errorf("remote_write %s: %w", e.URL.Redacted(), err)
		}
		out = append(out, su)
	}
	return out, nil
}

// queueOf makes the queue of a receiver set up, with its series.
func (w *Writer) queueOf(su setup) *queue {
	url := su.ep.URL.Redacted()
	q := &queue{
		ep: su.ep, url: url, client: su.client, pos: su.pos, o: &w.o,
		logger:  w.o.Logger.With("url", url),
		pending: map[string]int64{}, lastErr: map[string]string{},
		m: queueMetrics{
			sent:     w.m.samples.WithLabelValues(url, "sent"),
			retried:  w.m.samples.WithLabelValues(url, "retried"),
			rejected: w.m.samples.WithLabelValues(url, "rejected"),
			pending:  w.m.pending.WithLabelValues(url),
			lastSent: w.m.lastSent.WithLabelValues(url),
		},
	}
	for range su.ep.QueueConfig.MaxShards {
		q.reqs = append(q.reqs, newRequest(w.o.ExternalLabels))
	}
	return q
}

// Start starts every queue.
func (w *Writer) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start()
}

func (w *Writer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for _, q := range w.queues {
		w.wg.Go(func() { q.run(ctx) })
	}
}

// Stop stops the queues, giving up requests in flight (they are sent again
// after a restart), and keeps their positions. Apply refuses afterwards.
func (w *Writer) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.stop()
}

func (w *Writer) stop() {
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
	}
	w.wg.Wait()
}

// errStopped refuses an Apply after Stop.
var errStopped = errors.New("remote write has stopped")

// Apply replaces the running queues with those of cfg (a reload). Every
// receiver is set up first, so when cfg cannot be (a client's TLS files,
// say) nothing changes and the error says why. Then a receiver that
// stays goes on from its positions, with the requests in flight sent
// again; one new to the writer goes on from the positions it kept in the
// data directory, if it ever was a receiver, else from the beginning; one
// removed stops, keeps its positions on disk and loses its series.
func (w *Writer) Apply(cfg *Config) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return errStopped
	}
	running := map[string]*queue{}
	for _, q := range w.queues {
		running[q.ep.URL.String()] = q
	}
	setups, err := w.setUp(cfg, running)
	if err != nil {
		return err
	}
	w.stop()
	// The series of the old queues go first: a new receiver whose URL
	// differs only in its password has the same (redacted) series.
	kept := map[string]bool{}
	for _, su := range setups {
		kept[su.ep.URL.String()] = true
	}
	for u, q := range running {
		if !kept[u] {
			w.m.samples.DeletePartialMatch(prometheus.Labels{"url": q.url})
			w.m.pending.DeleteLabelValues(q.url)
			w.m.lastSent.DeleteLabelValues(q.url)
		}
		q.client.closeIdle()
	}
	w.queues = w.queues[:0:0]
	for _, su := range setups {
		q := w.queueOf(su)
		if old := running[su.ep.URL.String()]; old != nil {
			q.newest = old.newest
		}
		w.queues = append(w.queues, q)
	}
	w.start()
	return nil
}

type metrics struct {
	samples           *prometheus.CounterVec
	pending, lastSent *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_remote_write_samples_total",
			Help: "Raw samples by what became of them: sent (acknowledged by the receiver), retried (a send to retry), rejected (refused by the receiver for good: dropped).",
		}, []string{"url", "result"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_remote_write_pending_samples",
			Help: "Raw samples committed to the TSDB and not yet acknowledged by the receiver.",
		}, []string{"url"}),
		lastSent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_remote_write_last_sent_timestamp_seconds",
			Help: "Timestamp of the newest sample the receiver acknowledged.",
		}, []string{"url"}),
	}
	if reg != nil {
		reg.MustRegister(m.samples, m.pending, m.lastSent)
	}
	return m
}

type queueMetrics struct {
	sent, retried, rejected prometheus.Counter
	pending, lastSent       prometheus.Gauge
}

// queue follows every experiment for one receiver. Its state is used by
// its goroutine only.
type queue struct {
	ep     *Endpoint
	url    string
	client *client
	pos    *positions
	o      *Options
	logger *slog.Logger
	m      queueMetrics

	reqs    []*request // one per shard
	buf     []tsdbstore.Sample
	pending map[string]int64  // by experiment
	lastErr map[string]string // by experiment: logged once until it changes
	newest  int64             // ms of the newest sample acknowledged
	saved   time.Time         // when the positions were last saved
}

// saveEvery is how often a busy queue saves its positions (and when it
// stops): a crash sends at most that much again, which receivers take as
// duplicates, and a queue that keeps up does not fsync on every pass.
const saveEvery = time.Second

func (q *queue) run(ctx context.Context) {
	defer q.save()
	for {
		busy := q.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if !busy {
			select {
			case <-ctx.Done():
				return
			case <-time.After(q.o.Poll):
			}
		}
	}
}

func (q *queue) save() {
	q.saved = time.Now()
	if err := q.pos.save(); err != nil {
		q.logger.Error("keep remote-write positions", "err", err)
	}
}

// pass sends one round of each experiment's samples past its position,
// and tells whether any has more to send.
func (q *queue) pass(ctx context.Context) bool {
	ts, err := q.o.Targets()
	if err != nil {
		return false
	}
	ids := make(map[string]bool, len(ts))
	busy := false
	for _, t := range ts {
		id := t.ID()
		ids[id] = true
		more, err := q.follow(ctx, t)
		if errors.Is(err, errCancelled) || ctx.Err() != nil {
			return false
		}
		q.noteError(id, err)
		busy = busy || more
	}
	q.pos.keepOnly(ids)
	var pending int64
	for id, n := range q.pending {
		if !ids[id] {
			delete(q.pending, id)
			continue
		}
		pending += n
	}
	q.m.pending.Set(float64(pending))
	if time.Since(q.saved) >= saveEvery {
		q.save()
	}
	return busy
}

// noteError logs an experiment's error once, until it changes.
func (q *queue) noteError(id string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if q.lastErr[id] == msg {
		return
	}
	if err != nil {
		q.logger.Error("cannot read an experiment's samples for remote write; retrying", "experiment_id", id, "err", err)
		q.lastErr[id] = msg
	} else {
		delete(q.lastErr, id)
	}
}

// setPending notes an experiment's pending samples and sets the gauge, so
// it shows them while a send waits for the receiver.
func (q *queue) setPending(id string, n int64) {
	q.pending[id] = max(0, n)
	var sum int64
	for _, n := range q.pending {
		sum += n
	}
	q.m.pending.Set(float64(sum))
}

// errRoundFull ends a read once a round's samples are buffered.
var errRoundFull = errors.New("round full")

// follow sends one round of experiment t's committed samples past its
// position (up to max_shards requests, ending at a log frame) and keeps
// the position after them. It tells whether more remain.
func (q *queue) follow(ctx context.Context, t Target) (bool, error) {
	id := t.ID()
	e := q.pos.get(id)
	created := t.Created().UnixNano()
	if e.Created != created {
		// An entry without a creation time (kept before they were) is
		// taken as this experiment's.
		if e.Created != 0 {
			q.logger.Info("experiment made again under its id; sending it from its start", "experiment_id", id)
			e = entry{}
		}
		e.Created = created
		q.pos.set(id, e) // kept with its creation time from now on
	}
	final, count := t.Final()
	if e.Done && final && e.Events == count {
		q.pending[id] = 0
		return false, nil
	}
	s, err := t.Store()
	if err != nil {
		return false, err
	}
	mark, _ := s.Committed()
	if mark.Position.Less(e.Position) {
		// Not this log's position (an entry without a creation time of
		// an experiment made again under its id): from the beginning.
		q.logger.Warn("remote-write position past the end of the event log; sending the experiment again from its start", "experiment_id", id)
		e = entry{Created: created}
	}
	if mark.Position == e.Position {
		q.pending[id] = 0
		if final {
			q.pos.set(id, entry{Mark: e.Mark, Done: true, Events: count, Created: created})
		}
		return false, nil
	}
	q.setPending(id, mark.Samples-e.Samples)
	limit := len(q.reqs) * q.ep.QueueConfig.MaxSamplesPerSend
	next := e.Mark
	q.buf = q.buf[:0]
	err = s.ReadSamples(ctx, e.Position, mark.Position, func(samples []tsdbstore.Sample, pos tsdbstore.Position) error {
		q.buf = append(q.buf, samples...)
		next = tsdbstore.Mark{Position: pos, Samples: next.Samples + int64(len(samples))}
		if len(q.buf) >= limit {
			return errRoundFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errRoundFull) {
		if ctx.Err() != nil {
			return false, errCancelled
		}
		return false, err
	}
	if err := q.send(ctx, q.buf); err != nil {
		return false, err
	}
	q.pos.set(id, entry{Mark: next, Created: created})
	q.setPending(id, mark.Samples-next.Samples)
	return next.Position != mark.Position, nil
}

// send sends samples in requests of max_samples_per_send, max_shards at a
// time, each until the receiver acknowledges or refuses it. It fails only
// when the queue stops.
func (q *queue) send(ctx context.Context, samples []tsdbstore.Sample) error {
	size := q.ep.QueueConfig.MaxSamplesPerSend
	for len(samples) > 0 {
		var wg sync.WaitGroup
		errs := make([]error, len(q.reqs))
		used := 0
		for i, r := range q.reqs {
			if len(samples) == 0 {
				break
			}
			part := samples[:min(size, len(samples))]
			samples = samples[len(part):]
			used = i + 1
			wg.Go(func() {
				r.reset()
				for _, s := range part {
					r.add(s)
				}
				errs[i] = q.sendOne(ctx, r)
			})
		}
		wg.Wait()
		for i, r := range q.reqs[:used] {
			switch {
			case errs[i] == nil:
				q.newest = max(q.newest, r.newest)
			case errors.Is(errs[i], errCancelled):
				return errs[i]
			}
		}
		q.m.lastSent.Set(float64(q.newest) / 1000)
	}
	return nil
}

// sendOne sends one request. A request the receiver refuses for good (4xx:
// samples too old for it, say) is dropped and counted, as Prometheus does:
// sending it again would fail again and hold back every later sample.
func (q *queue) sendOne(ctx context.Context, r *request) error {
	n := float64(r.samples)
	err := q.client.write(ctx, r, func(error) { q.m.retried.Add(n) })
	switch {
	case err == nil:
		q.m.sent.Add(n)
	case errors.Is(err, errCancelled):
		return err
	default:
		q.m.rejected.Add(n)
		q.logger.Error("the receiver refused samples; they are dropped", "samples", r.samples, "err", err)
		r.newest = 0
	}
	return nil
}
