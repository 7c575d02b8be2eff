package tsdbstore

import (
	"log/slog"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// MetricScore is the raw sample of each score of an event (SPEC §13), with
// the score's name as the score label.
const MetricScore = "crucible_event_score"

// ScoreLabel names the score of a MetricScore series.
const ScoreLabel = "score"

// scoreCap admits the first max distinct score names of the experiment;
// later names are stored under event.OverflowValue. Like the other labels'
// cap it is decided once, under the store lock, as the event is placed, and
// the decision is stored in the event's log record (the mask after
// flagScoreOverflow), so a replay, a follower and a restart read it rather
// than decide again — also after the cap is changed.
type scoreCap struct {
	max      int
	admitted map[string]struct{}
	warned   bool
	logger   *slog.Logger
}

func newScoreCap(max int, logger *slog.Logger) *scoreCap {
	if max <= 0 {
		max = DefaultMaxLabelValues
	}
	return &scoreCap{max: max, admitted: map[string]struct{}{}, logger: logger}
}

// place returns the overflow bits of e's scores, admitting new names while
// there is room. Callers hold the store's lock.
func (c *scoreCap) place(e *event.Event) event.LabelOverflow {
	var o event.LabelOverflow
	for i, s := range e.Scores {
		if _, ok := c.admitted[s.Name]; ok {
			continue
		}
		if len(c.admitted) < c.max {
			c.admitted[s.Name] = struct{}{}
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

// full tells whether no name can be admitted any more.
func (c *scoreCap) full() bool { return len(c.admitted) >= c.max }

// learn admits the names a stored record kept (those not in its overflow
// bits o), read while opening the log. Names are copied: they may alias
// the log's buffer.
func (c *scoreCap) learn(e *event.Event, o event.LabelOverflow) {
	for i, s := range e.Scores {
		if o&event.OverflowScore(i) != 0 {
			continue
		}
		if _, ok := c.admitted[s.Name]; !ok {
			c.admitted[string([]byte(s.Name))] = struct{}{}
		}
	}
}

// scoreLabels are the labels of the score series name beside the series
// whose latency metric has labels base.
func scoreLabels(base labels.Labels, name string) labels.Labels {
	b := labels.NewBuilder(base)
	b.Set(labels.MetricName, MetricScore)
	b.Set(ScoreLabel, name)
	return b.Labels()
}
