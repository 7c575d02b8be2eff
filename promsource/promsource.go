// Package promsource reads an experiment's raw samples back from any
// Prometheus-compatible query API (Prometheus, Mimir, Thanos,
// VictoriaMetrics) and rebuilds the events they came from, for the
// analysis of a whole fleet of sidecars (SPEC §16).
//
// Each event is one raw sample per number at its millisecond, in series
// that share every label but the metric name and the score's name: the
// samples with equal other labels and equal time are one event. Remote-
// written samples also carry the sidecars' external labels (pod=...), so
// the events of two sidecars at one millisecond stay apart.
//
// The query API is read with plain net/http and decoded with
// prometheus/common/model: two endpoints are needed (query and
// query_range), and the answers' exact millisecond timestamps and float
// values are what model's types decode.
package promsource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Options configure a Source.
type Options struct {
	// URL is the query API's base: requests go to URL/api/v1/query.
	URL string
	// Header is sent with every request (X-Scope-OrgID, Authorization).
	Header http.Header
	// Selector is ANDed to every series selector ({job="crucible"}).
	Selector []*labels.Matcher
	// Start and End bound the samples read.
	Start, End time.Time
	// ChunkSamples is about how many samples one query reads; busier
	// stretches are read in shorter queries (DefaultChunkSamples when 0).
	ChunkSamples int64
	Client       *http.Client
	// Read is how samples are read: ReadAuto (when ""), ReadRemote or
	// ReadQuery.
	Read string
}

// DefaultChunkSamples keeps an answer far below receivers' limits
// (Prometheus' --query.max-samples is 50M) and its JSON near 20 MB.
const DefaultChunkSamples = 500_000

// planSteps is how many windows the time span is planned in, within
// Prometheus' 11,000 points per series of a range query.
const planSteps = 10_000

// Filter selects events by their labels and time, as the local commands'
// filters do.
type Filter struct {
	Condition, Event, Model, Provider string
	Success                           *bool
	FromUs, ToUs                      *int64 // µs, inclusive
}

// Read modes (--prometheus.read).
const (
	// ReadAuto reads with remote read, or through the query API when the
	// receiver does not serve remote read (VictoriaMetrics, Thanos Query).
	ReadAuto = "auto"
	// ReadRemote reads with Prometheus' remote-read protocol (streamed
	// chunks) from URL/api/v1/read.
	ReadRemote = "remote-read"
	// ReadQuery reads range selectors through the query API.
	ReadQuery = "query"
)

// ReadModes lists the read modes.
var ReadModes = []string{ReadAuto, ReadRemote, ReadQuery}

// Source reads one receiver.
type Source struct {
	o Options

	mu   sync.Mutex
	mode string // ReadAuto until a read tells
}

// New checks o and returns a Source.
func New(o Options) (*Source, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--prometheus.url %q: want http(s)://host[:port][/prefix]", o.URL)
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	if !o.Start.Before(o.End) {
		return nil, fmt.Errorf("the time span to read is empty: start %s, end %s", o.Start.Format(time.RFC3339), o.End.Format(time.RFC3339))
	}
	if o.ChunkSamples <= 0 {
		o.ChunkSamples = DefaultChunkSamples
	}
	if o.Client == nil {
		o.Client = http.DefaultClient
	}
	if o.Read == "" {
		o.Read = ReadAuto
	}
	if !slices.Contains(ReadModes, o.Read) {
		return nil, fmt.Errorf("--prometheus.read %q: want one of %s", o.Read, strings.Join(ReadModes, ", "))
	}
	return &Source{o: o, mode: o.Read}, nil
}

// Via tells how the samples are read: ReadRemote or ReadQuery (ReadAuto
// until the first read tells).
func (s *Source) Via() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

func (s *Source) setReadMode(m string) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// ParseSelector reads --prometheus.selector: label matchers in braces.
func ParseSelector(s string) ([]*labels.Matcher, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
	if err != nil {
		return nil, fmt.Errorf("--prometheus.selector %q: %w", s, err)
	}
	for _, m := range ms {
		if m.Name == model.MetricNameLabel {
			return nil, fmt.Errorf("--prometheus.selector %q: the metric name is chosen by the analysis", s)
		}
	}
	return ms, nil
}

// Experiment is what the samples say of one experiment.
type Experiment struct {
	Points []analysis.Point
	// Conditions are the condition labels its samples carry.
	Conditions []string
	// Samples is how many raw samples were read.
	Samples int64
}

// sampleMetrics matches every raw-sample metric of SPEC §5 and §13.
const sampleMetrics = "crucible_event_.+|crucible_train_.+"

// selector is the series selector of an experiment's raw samples, of
// the metrics name matches.
func (s *Source) selector(name *labels.Matcher, id string, f Filter) string {
	ms := s.matchers(name, id, f)
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// matchers select an experiment's raw samples of the metrics name matches.
func (s *Source) matchers(name *labels.Matcher, id string, f Filter) []*labels.Matcher {
	ms := []*labels.Matcher{name, labels.MustNewMatcher(labels.MatchEqual, "experiment_id", id)}
	for _, l := range [...]struct{ name, value string }{
		{"condition", f.Condition}, {"event", f.Event}, {"model", f.Model}, {"provider", f.Provider},
	} {
		if l.value != "" {
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.name, l.value))
		}
	}
	return append(ms, s.o.Selector...)
}

// Read reads the raw samples of experiment id that f selects and rebuilds
// its events, in time order.
func (s *Source) Read(ctx context.Context, id string, f Filter) (Experiment, error) {
	startMs, endMs := s.o.Start.UnixMilli(), s.o.End.UnixMilli()
	if f.FromUs != nil {
		startMs = max(startMs, floorDiv(*f.FromUs, 1000)-1) // (start, end]: from's millisecond included
	}
	if f.ToUs != nil {
		endMs = min(endMs, floorDiv(*f.ToUs, 1000))
	}
	g := newGrouper()
	var err error
	switch s.Via() {
	case ReadRemote:
		err = s.readRemote(ctx, id, f, startMs, endMs, g)
	case ReadQuery:
		err = s.readQuery(ctx, id, f, startMs, endMs, g)
	default:
		// A receiver without remote read says so before any sample is
		// grouped.
		err = s.readRemote(ctx, id, f, startMs, endMs, g)
		var none *noRemoteRead
		switch {
		case errors.As(err, &none):
			s.setReadMode(ReadQuery)
			err = s.readQuery(ctx, id, f, startMs, endMs, g)
		case err == nil:
			s.setReadMode(ReadRemote)
		}
	}
	if err != nil {
		return Experiment{}, err
	}
	out := g.experiment()
	out.Points = slices.DeleteFunc(out.Points, func(p analysis.Point) bool {
		return (f.Success != nil && (p.Success < 0 || (p.Success == 1) != *f.Success)) ||
			(f.FromUs != nil && p.TimestampUs < *f.FromUs) || (f.ToUs != nil && p.TimestampUs > *f.ToUs)
	})
	return out, nil
}

// readQuery reads (startMs, endMs] through the query API, in chunks of
// about ChunkSamples samples.
func (s *Source) readQuery(ctx context.Context, id string, f Filter, startMs, endMs int64, g *grouper) error {
	chunks, err := s.plan(ctx, id, f, startMs, endMs)
	if err != nil {
		return err
	}
	sel := s.selector(labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, sampleMetrics), id, f)
	// The next chunk is fetched while one is grouped: the query API and
	// the grouping each keep a core busy.
	type answer struct {
		c      chunk
		status int
		body   []byte
		err    error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan answer, 1)
	go func() {
		defer close(answers)
		for _, c := range chunks {
			form := url.Values{"query": {fmt.Sprintf("%s[%dms]", sel, c.end-c.start)}, "time": {msString(c.end)}}
			status, body, err := s.fetch(ctx, "/api/v1/query", form)
			select {
			case answers <- answer{c, status, body, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var p fastjson.Parser
	for a := range answers {
		if a.err == nil {
			a.err = g.chunk(&p, a.c, a.status, a.body)
		}
		if a.err != nil {
			return a.err
		}
	}
	return ctx.Err()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// chunk is a stretch (start, end] of ms read in one query.
type chunk struct{ start, end int64 }

// plan splits (startMs, endMs] into chunks of about ChunkSamples samples,
// from the sample counts of planSteps windows; a window with more is
// counted again in finer windows, down to a millisecond.
func (s *Source) plan(ctx context.Context, id string, f Filter, startMs, endMs int64) ([]chunk, error) {
	var ws []window
	if err := s.count(ctx, id, f, startMs, endMs, &ws); err != nil {
		return nil, err
	}
	// Chunks are cut at window ends and cover (startMs, endMs] without a
	// gap, whatever the counts say: receivers that align steps, or count a
	// window's first sample twice, only move the cuts.
	chunks := []chunk{{start: startMs}}
	var n int64
	for _, w := range ws {
		last := &chunks[len(chunks)-1]
		if n > 0 && n+w.n > s.o.ChunkSamples && w.start > last.start && w.start < endMs {
			last.end = w.start
			chunks = append(chunks, chunk{start: w.start})
			n = 0
		}
		n += w.n
	}
	chunks[len(chunks)-1].end = endMs
	return chunks, nil
}

// window is a stretch (start, end] holding n samples.
type window struct{ start, end, n int64 }

// count appends the windows of (startMs, endMs] that hold samples, in
// time order. Counted metric by metric: count_over_time drops the metric
// name, so one query over every metric would make series of different
// metrics collide.
func (s *Source) count(ctx context.Context, id string, f Filter, startMs, endMs int64, out *[]window) error {
	step := max((endMs-startMs+planSteps-1)/planSteps, 1)
	counts := map[int64]int64{}
	var p fastjson.Parser
	for _, name := range tsdbstore.MetricNames {
		sel := s.selector(labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name), id, f)
		q := fmt.Sprintf("sum(count_over_time(%s[%dms]))", sel, step)
		form := url.Values{"query": {q}, "start": {msString(startMs + step)}, "end": {msString(endMs + step)}, "step": {strconv.FormatInt(step, 10) + "ms"}}
		status, body, err := s.fetch(ctx, "/api/v1/query_range", form)
		if err == nil {
			err = matrix(&p, status, body, func(model.Metric) (func(int64, float64), error) {
				return func(ms int64, v float64) { counts[ms] += int64(v) }, nil
			})
		}
		if err != nil {
			return err
		}
	}
	for _, end := range slices.Sorted(maps.Keys(counts)) {
		w := window{max(end-step, startMs), min(end, endMs), counts[end]}
		if w.start >= w.end {
			continue
		}
		if w.n > s.o.ChunkSamples && step > 1 {
			if err := s.count(ctx, id, f, w.start, w.end, out); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, w)
	}
	return nil
}

func msString(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', 3, 64) }

// chunk groups the raw samples of (c.start, c.end], the answer to a
// range selector at c.end. A sample at c.start is dropped: receivers
// whose range selectors are closed on the left (Prometheus before 3.0)
// return it, and the chunk before holds it.
func (g *grouper) chunk(p *fastjson.Parser, c chunk, status int, body []byte) error {
	return matrix(p, status, body, func(m model.Metric) (func(int64, float64), error) {
		sr, err := g.series(m)
		if err != nil {
			return nil, err
		}
		return func(t int64, v float64) {
			if t > c.start && t <= c.end {
				g.add(sr, t, v)
			}
		}, nil
	})
}

// apiError is an error answer of the query API.
type apiError struct {
	Status    int
	ErrorType string
	Message   string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("query API answered %d", e.Status)
	if e.ErrorType != "" {
		msg += " (" + e.ErrorType + ")"
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if strings.Contains(e.Message, "too many samples") || strings.Contains(e.Message, "maxSamplesPerQuery") {
		msg += "; read less at once with --prometheus.chunk-samples, or a shorter span with --prometheus.start/--prometheus.end"
	}
	return msg
}

// fetch POSTs form to path and returns the answer's body.
func (s *Source) fetch(ctx context.Context, path string, form url.Values) (status int, body []byte, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.o.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range s.o.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("query API: %w", err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("query API: %w", err)
	}
	return resp.StatusCode, body, nil
}

// matrix reads an answer whose result must be a matrix, calling visit
// with each series' labels; visit returns what takes its samples. The
// answer is parsed once, with fastjson: an answer holds millions of
// samples, and encoding/json's reflection over model.Matrix cost most of
// a fleet analysis.
func matrix(p *fastjson.Parser, status int, body []byte, visit func(model.Metric) (func(ms int64, v float64), error)) error {
	v, err := p.ParseBytes(body)
	if err != nil || string(v.GetStringBytes("status")) != "success" {
		e := &apiError{Status: status}
		if err == nil {
			e.ErrorType, e.Message = string(v.GetStringBytes("errorType")), string(v.GetStringBytes("error"))
		} else {
			e.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
		}
		return e
	}
	if rt := string(v.GetStringBytes("data", "resultType")); rt != model.ValMatrix.String() {
		return fmt.Errorf("query API answered a %q, want a matrix", rt)
	}
	for _, ss := range v.GetArray("data", "result") {
		mv := ss.Get("metric")
		if mv == nil {
			return errors.New("query API: a series without labels")
		}
		o, err := mv.Object()
		if err != nil {
			return fmt.Errorf("query API: a series without labels: %w", err)
		}
		m := make(model.Metric, o.Len())
		o.Visit(func(k []byte, lv *fastjson.Value) { m[model.LabelName(k)] = model.LabelValue(lv.GetStringBytes()) })
		add, err := visit(m)
		if err != nil {
			return err
		}
		for _, pair := range ss.GetArray("values") {
			a, err := pair.Array()
			if err != nil || len(a) != 2 {
				return fmt.Errorf("query API: a sample is not [time, value]")
			}
			t, err := a[0].Float64()
			if err != nil {
				return fmt.Errorf("query API: sample time: %w", err)
			}
			val, err := strconv.ParseFloat(string(a[1].GetStringBytes()), 64)
			if err != nil {
				return fmt.Errorf("query API: sample value: %w", err)
			}
			add(int64(math.Round(t*1000)), val)
		}
	}
	return nil
}

// grouper gathers samples into events: one per series identity (every
// label but the metric name and the score's) and millisecond.
type grouper struct {
	ids        map[string]int // identity → index
	conditions map[string]bool
	events     map[eventKey]*analysis.Point
	samples    int64
}

type eventKey struct {
	id int
	ms int64
}

func newGrouper() *grouper {
	return &grouper{ids: map[string]int{}, conditions: map[string]bool{}, events: map[eventKey]*analysis.Point{}}
}

// identity is the series' labels but the metric name and the score's.
func identity(m model.Metric) string {
	names := make([]string, 0, len(m))
	for n := range m {
		if n != model.MetricNameLabel && n != tsdbstore.ScoreLabel {
			names = append(names, string(n))
		}
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(0)
		b.WriteString(string(m[model.LabelName(n)]))
		b.WriteByte(0)
	}
	return b.String()
}

// seriesRef is what the grouper needs of one series: the identity of its
// events and which number it holds.
type seriesRef struct {
	id     int
	metric string
	score  string
	event  string
}

// series looks a series up once per answer; its samples are added with add.
func (g *grouper) series(m model.Metric) (seriesRef, error) {
	key := identity(m)
	id, ok := g.ids[key]
	if !ok {
		id = len(g.ids)
		g.ids[key] = id
		g.conditions[string(m["condition"])] = true
	}
	r := seriesRef{id: id, metric: string(m[model.MetricNameLabel]), score: string(m[tsdbstore.ScoreLabel]), event: string(m["event"])}
	switch r.metric {
	case tsdbstore.MetricLatency, tsdbstore.MetricCost, tsdbstore.MetricPromptTokens, tsdbstore.MetricCompletionTokens,
		tsdbstore.MetricSuccess, tsdbstore.MetricScore,
		// Training numbers are not part of the analysis.
		tsdbstore.MetricTrainLoss, tsdbstore.MetricTrainAccuracy, tsdbstore.MetricTrainLR, tsdbstore.MetricTrainGradNorm:
		return r, nil
	}
	return r, fmt.Errorf("unexpected series %s", m)
}

func (g *grouper) add(r seriesRef, ms int64, v float64) {
	k := eventKey{r.id, ms}
	p := g.events[k]
	if p == nil {
		p = &analysis.Point{TimestampUs: ms * 1000, Event: r.event, LatencyMs: math.NaN(), CostUSD: math.NaN(), Success: -1}
		g.events[k] = p
	}
	g.samples++
	switch r.metric {
	case tsdbstore.MetricLatency:
		p.LatencyMs = v * 1000
	case tsdbstore.MetricCost:
		p.CostUSD = v
	case tsdbstore.MetricPromptTokens:
		p.HasTokens, p.Prompt = true, int64(v)
		p.Total = p.Prompt + p.Completion
	case tsdbstore.MetricCompletionTokens:
		p.HasTokens, p.Completion = true, int64(v)
		p.Total = p.Prompt + p.Completion
	case tsdbstore.MetricSuccess:
		p.Success = 0
		if v == 1 {
			p.Success = 1
		}
	case tsdbstore.MetricScore:
		p.Scores = append(p.Scores, analysis.Score{Name: r.score, Value: v})
	}
}

// experiment returns the events in time order (then by series, as a
// stable order of events that share a millisecond).
func (g *grouper) experiment() Experiment {
	keys := make([]eventKey, 0, len(g.events))
	for k := range g.events {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b eventKey) int { return cmp.Or(cmp.Compare(a.ms, b.ms), cmp.Compare(a.id, b.id)) })
	out := Experiment{Points: make([]analysis.Point, len(keys)), Samples: g.samples}
	for i, k := range keys {
		p := g.events[k]
		slices.SortFunc(p.Scores, func(a, b analysis.Score) int { return strings.Compare(a.Name, b.Name) })
		out.Points[i] = *p
	}
	for c := range g.conditions {
		out.Conditions = append(out.Conditions, c)
	}
	slices.Sort(out.Conditions)
	return out
}

// ErrNoSamples means the query API holds no sample of an experiment.
var ErrNoSamples = errors.New("no raw samples")
