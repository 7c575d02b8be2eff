package tsdbstore

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Metric names of the raw samples (SPEC §5).
const (
	MetricLatency          = "crucible_event_latency_seconds"
	MetricCost             = "crucible_event_cost_usd"
	MetricPromptTokens     = "crucible_event_prompt_tokens"
	MetricCompletionTokens = "crucible_event_completion_tokens"
	MetricSuccess          = "crucible_event_success"
	MetricTrainLoss        = "crucible_train_loss"
	MetricTrainAccuracy    = "crucible_train_accuracy"
	MetricTrainLR          = "crucible_train_learning_rate"
	MetricTrainGradNorm    = "crucible_train_gradient_norm"
	// SlotLabel distinguishes events of one series in one millisecond.
	SlotLabel = "slot"
)

const (
	mLatency = iota
	mCost
	mPrompt
	mCompletion
	mSuccess
	mLoss
	mAccuracy
	mLR
	mGradNorm
	mScore // one series per score name: seriesRefs.scores
	numMetrics
)

// MetricNames lists the sample metrics in a fixed order.
var MetricNames = [numMetrics]string{
	MetricLatency, MetricCost, MetricPromptTokens, MetricCompletionTokens, MetricSuccess,
	MetricTrainLoss, MetricTrainAccuracy, MetricTrainLR, MetricTrainGradNorm, MetricScore,
}

// SeriesLabelNames are the names of every label a sample's series can
// carry; labels added beyond the sidecar (external labels) must differ.
var SeriesLabelNames = []string{model.MetricNameLabel, "experiment_id", "condition", "event", "model", "provider", SlotLabel, ScoreLabel}

// seriesKey names a cached set of series: the label values and the slot.
type seriesKey struct {
	condition, event, model, provider string
	slot                              uint8
}

// seriesRefs caches, per metric, the labels and the TSDB's reference. The
// references are atomic: concurrent appends share them.
type seriesRefs struct {
	lbls [numMetrics]labels.Labels
	fed  [numMetrics]uint32 // the series' numbers in the feed, when there is one
	refs [numMetrics]atomic.Uint64
	// scores are the score series by score label; used under the TSDB
	// lock only.
	scores map[string]*scoreRef
}

type scoreRef struct {
	lbls labels.Labels
	fed  uint32 // in the feed
	ref  storage.SeriesRef
}

// refsFor returns the series of labels l in slot. Callers hold s.mu (or
// are alone, as in Open).
func (s *Store) refsFor(l seriesLabels, slot uint8) *seriesRefs {
	k := seriesKey{l.condition, l.event, l.model, l.provider, slot}
	if r, ok := s.series[k]; ok {
		return r
	}
	r := &seriesRefs{lbls: s.seriesOf(l, slot)}
	for m, ls := range r.lbls {
		r.fed[m] = s.feedSeries(ls)
	}
	s.series[k] = r
	return r
}

// seriesOf builds the labels of each metric's series of labels l in slot.
func (s *Store) seriesOf(l seriesLabels, slot uint8) [numMetrics]labels.Labels {
	var out [numMetrics]labels.Labels
	b := labels.NewBuilder(labels.EmptyLabels())
	b.Set("experiment_id", s.opts.ExperimentID)
	b.Set("condition", l.condition)
	b.Set("event", l.event)
	b.Set("model", l.model) // empty values drop the label
	b.Set("provider", l.provider)
	if slot > 0 {
		b.Set(SlotLabel, strconv.Itoa(int(slot)))
	}
	for m, name := range MetricNames {
		b.Set(model.MetricNameLabel, name)
		out[m] = b.Labels()
	}
	return out
}

// SamplesOf calls emit for each raw sample event e has when cfg says which
// numbers are recorded (SPEC §5, §13): the metric, as an index into
// MetricNames, the score label for MetricScore ("" for the others), and
// the value. o is the event's overflow decision: scores whose names are
// past the cap are recorded as Event.ScoreLabels says.
// It is the one definition of how an event becomes samples, for the TSDB
// and for anything that sends them on.
func SamplesOf(e *event.Event, cfg MetricsConfig, o event.LabelOverflow, emit func(metric int, score string, v float64)) {
	if cfg.Latency && e.LatencyMs.Valid {
		emit(mLatency, "", e.LatencyMs.V/1000)
	}
	if cfg.Cost && e.CostUSD.Valid {
		emit(mCost, "", e.CostUSD.V)
	}
	if cfg.Tokens && e.Tokens != nil {
		if e.Tokens.Prompt.Valid {
			emit(mPrompt, "", float64(e.Tokens.Prompt.V))
		}
		if e.Tokens.Completion.Valid {
			emit(mCompletion, "", float64(e.Tokens.Completion.V))
		}
	}
	if cfg.SuccessRate && e.Success.Valid {
		v := 0.0
		if e.Success.V {
			v = 1
		}
		emit(mSuccess, "", v)
	}
	if tr := e.Training; tr != nil {
		for _, f := range [...]struct {
			m int
			v event.Null[float64]
		}{{mLoss, tr.Loss}, {mAccuracy, tr.Accuracy}, {mLR, tr.LearningRate}, {mGradNorm, tr.GradientNorm}} {
			if f.v.Valid {
				emit(f.m, "", f.v.V)
			}
		}
	}
	if len(e.Scores) > 0 {
		e.ScoreLabels(o, func(label string, v float64) { emit(mScore, label, v) })
	}
}

// appendSamples appends the numbers of one event at ms to its series r. It
// returns how many samples the event has, whether or not the TSDB took them.
// o is the event's overflow decision. Callers hold the TSDB lock (or are
// alone, as in a replay). When fed is not nil, the samples are appended to
// it as well.
func (s *Store) appendSamples(app storage.AppenderV2, e *event.Event, ms int64, r *seriesRefs, o event.LabelOverflow, fed *[]fedSample) (int, error) {
	var errs []error
	n := 0
	add := func(m int, score string, v float64) {
		n++
		if m == mScore {
			sr := s.scoreRef(r, score)
			if fed != nil {
				*fed = append(*fed, fedSample{sr.fed, ms, v})
			}
			ref, err := app.Append(sr.ref, sr.lbls, 0, ms, v, nil, nil, storage.AOptions{})
			if err != nil {
				errs = append(errs, err)
				return
			}
			sr.ref = ref
			return
		}
		if fed != nil {
			*fed = append(*fed, fedSample{r.fed[m], ms, v})
		}
		ref, err := app.Append(storage.SeriesRef(r.refs[m].Load()), r.lbls[m], 0, ms, v, nil, nil, storage.AOptions{})
		if err != nil {
			errs = append(errs, err)
			return
		}
		r.refs[m].Store(uint64(ref))
	}
	SamplesOf(e, s.opts.Metrics, o, add)
	return n, errors.Join(errs...)
}

// scoreRef returns the series of the score label name beside r.
func (s *Store) scoreRef(r *seriesRefs, name string) *scoreRef {
	if sr, ok := r.scores[name]; ok {
		return sr
	}
	if r.scores == nil {
		r.scores = map[string]*scoreRef{}
	}
	ls := scoreLabels(r.lbls[mScore], name)
	sr := &scoreRef{lbls: ls, fed: s.feedSeries(ls)}
	r.scores[name] = sr
	return sr
}

// feedSeries numbers a new series in the feed (0 without a feed).
func (s *Store) feedSeries(ls labels.Labels) uint32 {
	if s.follow == nil {
		return 0
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	return s.follow.addSeries(ls, ls.Hash())
}
