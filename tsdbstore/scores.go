package tsdbstore

import (
	"log/slog"
	"sync"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// MetricScore is the raw sample of each score of an event (SPEC §13), with
// the score's name as the score label.
const MetricScore = "crucible_event_score"

// ScoreLabel names the score of a MetricScore series.
const ScoreLabel = "score"

// scoreCap admits the first max distinct score names of the experiment;
// later names are stored under event.OverflowValue. Names are decided in
// the order of the log (under the TSDB lock, which also orders the log's
// frames), so reading the log from its start decides every record as it
// was decided when it was stored. Once the cap is full it never changes:
// a name is admitted exactly when it is in the set the log's records
// build, which is what a replay or a follower reads.
type scoreCap struct {
	max      int
	mu       sync.RWMutex // admitted may be read by followers during appends
	admitted map[string]struct{}
	pending  []string // admitted by the append in progress, not yet committed
	warned   bool
	logger   *slog.Logger
}

func newScoreCap(max int, logger *slog.Logger) *scoreCap {
	if max <= 0 {
		max = DefaultMaxLabelValues
	}
	return &scoreCap{max: max, admitted: map[string]struct{}{}, logger: logger}
}

// decide returns the overflow bits of e's scores for an append in
// progress, admitting new names while there is room. Callers hold the
// TSDB lock; commit or discard ends the append.
func (c *scoreCap) decide(e *event.Event) event.LabelOverflow {
	var o event.LabelOverflow
	for i, s := range e.Scores {
		if c.known(s.Name) {
			continue
		}
		if len(c.admitted)+len(c.pending) < c.max {
			c.pending = append(c.pending, s.Name)
			continue
		}
		if !c.warned {
			c.warned = true
			c.logger.Warn("score name cap reached: further names go to the series labelled "+event.OverflowValue,
				"label", ScoreLabel, "max", c.max)
		}
		o |= event.OverflowScore(i)
	}
	return o
}

func (c *scoreCap) known(name string) bool {
	c.mu.RLock()
	_, ok := c.admitted[name]
	c.mu.RUnlock()
	if ok {
		return true
	}
	for _, p := range c.pending {
		if p == name {
			return true
		}
	}
	return false
}

// commit makes the names the append admitted part of the cap.
func (c *scoreCap) commit() {
	if len(c.pending) == 0 {
		return
	}
	c.mu.Lock()
	for _, n := range c.pending {
		c.admitted[n] = struct{}{}
	}
	c.mu.Unlock()
	c.pending = c.pending[:0]
}

// discard forgets the names of an append that stored nothing.
func (c *scoreCap) discard() { c.pending = c.pending[:0] }

// learn decides a stored record's scores as they were decided, reading the
// log in order on Open. Names alias the log's buffer and are copied.
func (c *scoreCap) learn(e *event.Event) {
	for _, s := range e.Scores {
		if _, ok := c.admitted[s.Name]; !ok && len(c.admitted) < c.max {
			c.admitted[string([]byte(s.Name))] = struct{}{}
		}
	}
}

// stored returns the overflow bits e's scores were stored with: the names
// outside the cap.
func (c *scoreCap) stored(e *event.Event) event.LabelOverflow {
	var o event.LabelOverflow
	if len(e.Scores) == 0 {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for i, s := range e.Scores {
		if _, ok := c.admitted[s.Name]; !ok {
			o |= event.OverflowScore(i)
		}
	}
	return o
}

// scoreName is the score label of e's i-th score under overflow o.
func scoreName(e *event.Event, i int, o event.LabelOverflow) string {
	if o&event.OverflowScore(i) != 0 {
		return event.OverflowValue
	}
	return e.Scores[i].Name
}

// scoreLabels are the labels of the score series name beside the series
// whose latency metric has labels base.
func scoreLabels(base labels.Labels, name string) labels.Labels {
	b := labels.NewBuilder(base)
	b.Set(labels.MetricName, MetricScore)
	b.Set(ScoreLabel, name)
	return b.Labels()
}
