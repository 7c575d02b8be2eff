// Package collector serves the live metrics of every experiment on /metrics:
// event counters, latency histograms (native and classic buckets), cost and
// token counters, streaming statistics, and the experiments' state. The
// experiment's lifecycle owns its series: pause keeps them, stop keeps them
// for a TTL, delete removes them.
package collector

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// LatencyBuckets are the classic buckets of crucible_latency_seconds: the
// OpenTelemetry GenAI advisory boundaries for LLM operation durations.
var LatencyBuckets = []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}

// Statuses are the values of crucible_experiment_status{status}.
var Statuses = []string{"running", "paused", "stopped", "archived"}

// Options configure the Metrics.
type Options struct {
	// StoppedSeriesTTL is how long a stopped experiment's series stay.
	StoppedSeriesTTL time.Duration
	Now              func() time.Time
}

// Metrics holds every experiment's live series. Register it once; it
// registers the vectors it owns as well.
type Metrics struct {
	opts Options

	events   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	cost     *prometheus.CounterVec
	tokens   *prometheus.CounterVec
	info     *prometheus.GaugeVec
	status   *prometheus.GaugeVec
	stored   *prometheus.GaugeVec
	target   *prometheus.GaugeVec
	overflow *prometheus.CounterVec
	score    *prometheus.SummaryVec

	streamDescs streamDescs

	mu   sync.Mutex
	exps map[string]*experiment
}

// Experiment describes what the metrics need to know of an experiment.
type Experiment struct {
	ID, Name, Condition string
	Status              string
	Target              int64 // sample_size; 0 when none
	Stored              int64
	StoppedAt           time.Time // when stopped or archived
}

type childKey struct{ event, model, provider string }

// children are the cached series of one (event, model, provider): looking a
// child up costs more than observing it.
type children struct {
	outcome                  [3]prometheus.Counter // success, failure, unknown
	latency                  prometheus.Observer
	cost, prompt, completion prometheus.Counter
}

type experiment struct {
	Experiment
	mu       sync.Mutex // guards the fields below
	kids     map[childKey]*children
	scores   map[string]prometheus.Observer // by score label
	stream   Stream
	removeAt time.Time // set when stopped
}

// New builds the metrics and registers them with reg.
func New(reg prometheus.Registerer, opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	exp := []string{"experiment_id", "experiment", "condition"}
	with := func(extra ...string) []string { return append(append([]string(nil), exp...), extra...) }
	m := &Metrics{
		opts: opts,
		exps: make(map[string]*experiment),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_events_total",
			Help: "Events stored, by outcome: success, failure, or unknown when the event does not say.",
		}, with("event", "outcome")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "crucible_latency_seconds",
			Help:                            "Latency of events that carry one.",
			Buckets:                         LatencyBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, with("event", "model", "provider")),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_cost_usd_total",
			Help: "Cost of the events in USD.",
		}, with("model", "provider")),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_tokens_total",
			Help: "Tokens of the events, by type: prompt or completion.",
		}, with("model", "provider", "type")),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_experiment_info",
			Help: "Always 1: the name and condition of each experiment.",
		}, exp),
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_experiment_status",
			Help: "1 for the experiment's current status, 0 for the others.",
		}, []string{"experiment_id", "status"}),
		stored: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_experiment_events",
			Help: "Events stored for the experiment.",
		}, []string{"experiment_id"}),
		target: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "crucible_experiment_target_events",
			Help: "The experiment's sample_size; absent when it has none.",
		}, []string{"experiment_id"}),
		overflow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_label_overflow_events_total",
			Help: "Events whose model, provider, event name or a score name was counted as \"other\" because the experiment reached --metrics.max-label-values.",
		}, []string{"experiment_id", "label"}),
		// A summary without quantiles: _sum and _count give the mean score
		// over any range, and quantiles of a summary cannot be aggregated.
		score: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name: "crucible_score",
			Help: "Quality scores of the events, by score name.",
		}, with("score")),
	}
	m.streamDescs = newStreamDescs()
	reg.MustRegister(m.events, m.latency, m.cost, m.tokens, m.info, m.status, m.stored, m.target, m.overflow, m.score, streamCollector{m})
	return m
}

// Set creates or updates an experiment's state series. A stopped or
// archived experiment's series are removed after the TTL.
func (m *Metrics) Set(e Experiment) {
	m.mu.Lock()
	x := m.exps[e.ID]
	if x == nil {
		x = &experiment{Experiment: e, kids: make(map[childKey]*children), scores: map[string]prometheus.Observer{}, stream: Stream{Since: m.opts.Now()}}
		m.exps[e.ID] = x
		m.info.WithLabelValues(e.ID, e.Name, e.Condition).Set(1)
	}
	m.mu.Unlock()

	x.mu.Lock()
	x.Status, x.Target = e.Status, e.Target
	if e.Status == "stopped" || e.Status == "archived" {
		if x.removeAt.IsZero() {
			stopped := e.StoppedAt
			if stopped.IsZero() {
				stopped = m.opts.Now()
			}
			x.removeAt = stopped.Add(m.opts.StoppedSeriesTTL)
		}
	} else {
		x.removeAt = time.Time{}
	}
	x.mu.Unlock()
	for _, s := range Statuses {
		v := 0.0
		if s == e.Status {
			v = 1
		}
		m.status.WithLabelValues(e.ID, s).Set(v)
	}
	if e.Target > 0 {
		m.target.WithLabelValues(e.ID).Set(float64(e.Target))
	} else {
		m.target.DeleteLabelValues(e.ID)
	}
	m.stored.WithLabelValues(e.ID).Set(float64(e.Stored))
}

// Gone tells whether an experiment stopped at stoppedAt is past the TTL, so
// that its series need not be built at all.
func (m *Metrics) Gone(stoppedAt time.Time) bool {
	return !stoppedAt.IsZero() && !m.opts.Now().Before(stoppedAt.Add(m.opts.StoppedSeriesTTL))
}

// Remove deletes every series of an experiment at once.
func (m *Metrics) Remove(id string) {
	m.mu.Lock()
	delete(m.exps, id)
	m.mu.Unlock()
	match := prometheus.Labels{"experiment_id": id}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.events, m.latency, m.cost, m.tokens, m.info, m.status, m.stored, m.target, m.overflow, m.score,
	} {
		v.DeletePartialMatch(match)
	}
}

// Expire removes the series of experiments stopped longer than the TTL ago.
// It returns the ids removed.
func (m *Metrics) Expire() []string {
	now := m.opts.Now()
	var gone []string
	m.mu.Lock()
	for id, x := range m.exps {
		x.mu.Lock()
		if !x.removeAt.IsZero() && !now.Before(x.removeAt) {
			gone = append(gone, id)
		}
		x.mu.Unlock()
	}
	m.mu.Unlock()
	for _, id := range gone {
		m.Remove(id)
	}
	return gone
}

func (m *Metrics) lookup(id string) *experiment {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exps[id]
}

// Observe counts stored events of experiment id; stored is the experiment's
// count of stored events afterwards. overflow (nil: none) holds storage's
// label-cap decision for each event, which the series follow: the cap is
// decided once, where the event is stored.
func (m *Metrics) Observe(id string, events []*event.Event, overflow []event.LabelOverflow, stored int64) {
	x := m.lookup(id)
	if x == nil {
		return
	}
	x.mu.Lock()
	for i, e := range events {
		var o event.LabelOverflow
		if overflow != nil {
			o = overflow[i]
		}
		m.observe(x, e, o)
		x.stream.add(e)
	}
	x.mu.Unlock()
	m.stored.WithLabelValues(id).Set(float64(stored))
}

var cappedLabels = [...]struct {
	name string
	bit  event.LabelOverflow
}{{"event", event.OverflowEvent}, {"model", event.OverflowModel}, {"provider", event.OverflowProvider}}

func (m *Metrics) observe(x *experiment, e *event.Event, overflow event.LabelOverflow) {
	if len(e.Scores) > 0 {
		m.observeScores(x, e, overflow)
		overflow = overflow.Labels()
	}
	key := childKey{e.EventName, e.Model.V, e.Provider.V}
	if overflow != 0 {
		for _, l := range cappedLabels {
			if overflow&l.bit != 0 {
				m.overflow.WithLabelValues(x.ID, l.name).Inc()
			}
		}
	}
	c := x.kids[key]
	if c == nil {
		ev, model, provider := key.event, key.model, key.provider
		for _, v := range []struct {
			s   *string
			bit event.LabelOverflow
		}{{&ev, event.OverflowEvent}, {&model, event.OverflowModel}, {&provider, event.OverflowProvider}} {
			if overflow&v.bit != 0 {
				*v.s = event.OverflowValue
			}
		}
		c = &children{
			latency:    m.latency.WithLabelValues(x.ID, x.Name, x.Condition, ev, model, provider),
			cost:       m.cost.WithLabelValues(x.ID, x.Name, x.Condition, model, provider),
			prompt:     m.tokens.WithLabelValues(x.ID, x.Name, x.Condition, model, provider, "prompt"),
			completion: m.tokens.WithLabelValues(x.ID, x.Name, x.Condition, model, provider, "completion"),
		}
		for i, o := range [...]string{"success", "failure", "unknown"} {
			c.outcome[i] = m.events.WithLabelValues(x.ID, x.Name, x.Condition, ev, o)
		}
		// Values past the cap share "other" series: only the first key of
		// a value is cached, the rest look the series up again, which is
		// cheap enough for the overflow path.
		if overflow == 0 {
			x.kids[key] = c
		}
	}
	switch {
	case !e.Success.Valid:
		c.outcome[2].Inc()
	case e.Success.V:
		c.outcome[0].Inc()
	default:
		c.outcome[1].Inc()
	}
	if e.LatencyMs.Valid {
		c.latency.Observe(e.LatencyMs.V / 1000)
	}
	if e.CostUSD.Valid {
		c.cost.Add(e.CostUSD.V)
	}
	if t := e.Tokens; t != nil {
		if t.Prompt.Valid {
			c.prompt.Add(float64(t.Prompt.V))
		}
		if t.Completion.Valid {
			c.completion.Add(float64(t.Completion.V))
		}
	}
}

// observeScores observes e's scores under the labels storage recorded them
// with (Event.ScoreLabels), so /metrics and the TSDB agree.
func (m *Metrics) observeScores(x *experiment, e *event.Event, overflow event.LabelOverflow) {
	if overflow.Scores() {
		m.overflow.WithLabelValues(x.ID, "score").Inc()
	}
	e.ScoreLabels(overflow, func(name string, v float64) {
		o := x.scores[name]
		if o == nil {
			o = m.score.WithLabelValues(x.ID, x.Name, x.Condition, name)
			x.scores[name] = o
		}
		o.Observe(v)
	})
}

// Stream returns an experiment's streaming statistics.
func (m *Metrics) Stream(id string) (Stream, bool) {
	x := m.lookup(id)
	if x == nil {
		return Stream{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.stream.clone(), true
}

// ResetStream restarts an experiment's streaming statistics from zero; the
// counters and histograms are left alone.
func (m *Metrics) ResetStream(id string, at time.Time) bool {
	x := m.lookup(id)
	if x == nil {
		return false
	}
	x.mu.Lock()
	x.stream = Stream{Since: at}
	x.mu.Unlock()
	return true
}
