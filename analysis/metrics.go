package analysis

import (
	"cmp"
	"math"
	"slices"
)

// Point is what the analysis needs of one stored event.
type Point struct {
	TimestampUs int64
	Event       string
	LatencyMs   float64 // NaN when the event has none
	CostUSD     float64 // NaN when the event has none
	Success     int8    // 1 success, 0 failure, -1 unknown
	HasTokens   bool
	Prompt      int64
	Completion  int64
	Total       int64
	// Sample is the event's sample_id, "" when it has none: events of two
	// arms with one sample are paired (SPEC §13).
	Sample string
	// Scores are the event's quality scores, sorted by name.
	Scores []Score
	// Cluster is the value of the ?cluster= key (SPEC §14); events without
	// it (HasCluster false) are a cluster each.
	Cluster    string
	HasCluster bool
}

// Score is one named quality score of an event.
type Score struct {
	Name  string
	Value float64
}

// TimeRange is the first and last event time in µs since the epoch.
type TimeRange struct {
	Start *int64 `json:"start"`
	End   *int64 `json:"end"`
}

// Summary describes the events as a whole.
type Summary struct {
	TotalEvents     int              `json:"total_events"`
	TimeRange       TimeRange        `json:"time_range"`
	DurationSeconds Null             `json:"duration_seconds"`
	EventTypes      map[string]int64 `json:"event_types"`
}

// Cost sums cost over the events that have one.
type Cost struct {
	Count             int  `json:"count"`
	Total             Null `json:"total"`
	MeanPerRequest    Null `json:"mean_per_request"`
	MedianPerRequest  Null `json:"median_per_request"`
	CostPer1kRequests Null `json:"cost_per_1k_requests"`
	CostPer1mRequests Null `json:"cost_per_1m_requests"`
	// MeanSEClustered and MeanCI95Clustered are MeanPerRequest's clustered
	// standard error and interval (SPEC §14), only with clusters.
	MeanSEClustered   *Null    `json:"mean_se_clustered,omitempty"`
	MeanCI95Clustered *[2]Null `json:"mean_ci95_clustered,omitempty"`
}

// Reliability counts outcomes; rates are over the judged events.
type Reliability struct {
	TotalRequests   int64   `json:"total_requests"`
	Judged          int64   `json:"judged"`
	Successful      int64   `json:"successful"`
	Failed          int64   `json:"failed"`
	SuccessRate     Null    `json:"success_rate"`
	FailureRate     Null    `json:"failure_rate"`
	SuccessRateCI95 [2]Null `json:"success_rate_ci95"`
	SLA99           *bool   `json:"sla_99"`
	SLA999          *bool   `json:"sla_999"`
	SLA9999         *bool   `json:"sla_9999"`
	// SuccessRateSEClustered and SuccessRateCI95Clustered are the success
	// rate's clustered standard error and interval, success 1 and failure
	// 0 over the judged events (SPEC §14), only with clusters.
	SuccessRateSEClustered   *Null    `json:"success_rate_se_clustered,omitempty"`
	SuccessRateCI95Clustered *[2]Null `json:"success_rate_ci95_clustered,omitempty"`
}

// Tokens sums token counts over the events that have them.
type Tokens struct {
	Count           int   `json:"count"`
	TotalPrompt     int64 `json:"total_prompt"`
	TotalCompletion int64 `json:"total_completion"`
	Total           int64 `json:"total"`
	MeanPrompt      Null  `json:"mean_prompt"`
	MeanCompletion  Null  `json:"mean_completion"`
	MeanTotal       Null  `json:"mean_total"`
}

// EventCount is one event name's count.
type EventCount struct {
	Count int64 `json:"count"`
}

// Report is the exact analysis of a set of events (SPEC §7).
type Report struct {
	Summary     Summary                     `json:"summary"`
	Latency     Description                 `json:"latency"`
	Cost        Cost                        `json:"cost"`
	Reliability Reliability                 `json:"reliability"`
	Tokens      Tokens                      `json:"tokens"`
	Scores      map[string]ScoreDescription `json:"scores"` // by score name (SPEC §13); empty, never null
	Events      map[string]EventCount       `json:"events"`
	// Notes say what a report read from elsewhere than the event logs
	// cannot hold (fleet analysis, SPEC §16).
	Notes []string `json:"notes,omitempty"`
}

// AnalyzeOptions choose what an analysis computes beyond SPEC §7's.
type AnalyzeOptions struct {
	// Clustered adds the clustered standard errors and intervals of the
	// means (SPEC §14), over the points' clusters.
	Clustered bool
}

// Analyze computes the report over every point.
func Analyze(points []Point) Report { return AnalyzeWith(points, AnalyzeOptions{}) }

// AnalyzeWith computes the report over every point, with what opts add.
func AnalyzeWith(points []Point, opts AnalyzeOptions) Report {
	r := Report{
		Summary: Summary{TotalEvents: len(points), DurationSeconds: NaN, EventTypes: map[string]int64{}},
		Events:  map[string]EventCount{},
	}
	latency := make([]float64, 0, len(points))
	cost := make([]float64, 0, len(points))
	var rel Reliability
	var tok Tokens
	var scores scoreValues
	// With clusters: each value's cluster, and success by cluster.
	var groups clusters
	var latencyCl, costCl []int32
	var success successByCluster
	cluster := int32(noCluster)
	if opts.Clustered {
		latencyCl, costCl = make([]int32, 0, len(points)), make([]int32, 0, len(points))
		scores.clustered = true
	}
	first, last := int64(math.MaxInt64), int64(math.MinInt64)
	names := map[string]int64{}
	prev, prevCount := "", int64(0) // runs of one name are counted once
	for i := range points {
		p := &points[i]
		first, last = min(first, p.TimestampUs), max(last, p.TimestampUs)
		if p.Event != prev {
			if prevCount > 0 {
				names[prev] += prevCount
			}
			prev, prevCount = p.Event, 0
		}
		prevCount++
		if opts.Clustered {
			cluster = groups.of(p)
			if !math.IsNaN(p.LatencyMs) {
				latencyCl = append(latencyCl, cluster)
			}
			if !math.IsNaN(p.CostUSD) {
				costCl = append(costCl, cluster)
			}
			if p.Success >= 0 {
				success.add(cluster, p.Success)
			}
		}
		if !math.IsNaN(p.LatencyMs) {
			latency = append(latency, p.LatencyMs)
		}
		if !math.IsNaN(p.CostUSD) {
			cost = append(cost, p.CostUSD)
		}
		switch p.Success {
		case 1:
			rel.Judged++
			rel.Successful++
		case 0:
			rel.Judged++
			rel.Failed++
		}
		if p.HasTokens {
			tok.Count++
			tok.TotalPrompt += p.Prompt
			tok.TotalCompletion += p.Completion
			tok.Total += p.Total
		}
		if len(p.Scores) > 0 {
			scores.add(p.Scores, cluster)
		}
	}
	if prevCount > 0 {
		names[prev] += prevCount
	}
	r.Summary.EventTypes = names
	for name, n := range names {
		r.Events[name] = EventCount{n}
	}
	if len(points) > 0 {
		r.Summary.TimeRange = TimeRange{Start: &first, End: &last}
		r.Summary.DurationSeconds = Null(float64(last-first) / 1e6)
	}
	// The clustered errors are computed before Describe reorders the values.
	var latencySE, costSE Null
	if opts.Clustered {
		var cs clusterSums
		latencySE = cs.clusteredSE(latency, latencyCl, groups.n())
		costSE = cs.clusteredSE(cost, costCl, groups.n())
		scores.setClusteredSE(&cs, groups.n())
	}
	r.Latency = Describe(latency)
	r.Cost = costOf(cost)
	rel.TotalRequests = int64(len(points))
	r.Reliability = reliability(rel)
	r.Tokens = tokensOf(tok)
	r.Scores = scores.describe()
	if opts.Clustered {
		r.Latency.MeanSEClustered, r.Latency.MeanCI95Clustered = clusteredMean(r.Latency.Mean, latencySE)
		r.Cost.MeanSEClustered, r.Cost.MeanCI95Clustered = clusteredMean(r.Cost.MeanPerRequest, costSE)
		r.Reliability.SuccessRateSEClustered, r.Reliability.SuccessRateCI95Clustered = clusteredMean(r.Reliability.SuccessRate, success.se())
	}
	return r
}

func costOf(cost []float64) Cost {
	c := Cost{Count: len(cost), Total: NaN, MeanPerRequest: NaN, MedianPerRequest: NaN, CostPer1kRequests: NaN, CostPer1mRequests: NaN}
	if len(cost) == 0 {
		return c
	}
	total := Sum(cost)
	mean := total / float64(len(cost))
	if math.IsInf(total, 0) || math.IsNaN(total) {
		mean = Mean(cost) // the total is beyond float64, the mean need not be
	}
	c.Total, c.MeanPerRequest, c.MedianPerRequest = Null(total), Null(mean), Null(Percentiles(cost, 50)[0])
	c.CostPer1kRequests, c.CostPer1mRequests = Null(mean*1000), Null(mean*1e6)
	return c
}

func reliability(r Reliability) Reliability {
	r.SuccessRate, r.FailureRate = NaN, NaN
	r.SuccessRateCI95 = Wilson(r.Successful, r.Judged)
	if r.Judged == 0 {
		return r
	}
	rate := float64(r.Successful) / float64(r.Judged)
	r.SuccessRate, r.FailureRate = Null(rate), Null(float64(r.Failed)/float64(r.Judged))
	flag := func(min float64) *bool { b := rate >= min; return &b }
	r.SLA99, r.SLA999, r.SLA9999 = flag(0.99), flag(0.999), flag(0.9999)
	return r
}

func tokensOf(t Tokens) Tokens {
	t.MeanPrompt, t.MeanCompletion, t.MeanTotal = NaN, NaN, NaN
	if t.Count > 0 {
		n := float64(t.Count)
		t.MeanPrompt, t.MeanCompletion, t.MeanTotal = Null(float64(t.TotalPrompt)/n), Null(float64(t.TotalCompletion)/n), Null(float64(t.Total)/n)
	}
	return t
}

// Window is the statistics of one time window.
type Window struct {
	WindowStart  int64 `json:"window_start"` // µs
	WindowEnd    int64 `json:"window_end"`   // µs, exclusive
	EventCount   int   `json:"event_count"`
	MeanLatency  Null  `json:"mean_latency"`
	P50Latency   Null  `json:"p50_latency"`
	P95Latency   Null  `json:"p95_latency"`
	TotalCost    Null  `json:"total_cost"`
	SuccessCount int64 `json:"success_count"`
	FailureCount int64 `json:"failure_count"`
}

// Windows cuts points into windows [start, start+size) every step, anchored
// at the first event. Empty windows are left out. Windows go on until the
// last event is in one, so every event is in at least one window — also
// when all events span less than one window. step must be in (0, size].
// points are sorted by time in place.
func Windows(points []Point, sizeUs, stepUs int64) []Window {
	if len(points) == 0 || sizeUs <= 0 || stepUs <= 0 || stepUs > sizeUs {
		return []Window{}
	}
	if !slices.IsSortedFunc(points, byTime) {
		slices.SortFunc(points, byTime)
	}
	first, last := points[0].TimestampUs, points[len(points)-1].TimestampUs
	out := []Window{}
	lo := 0 // first point at or after the window's start
	for start := first; start <= last; start += stepUs {
		for lo < len(points) && points[lo].TimestampUs < start {
			lo++
		}
		hi := lo
		end := start + sizeUs
		for hi < len(points) && points[hi].TimestampUs < end {
			hi++
		}
		if hi == lo {
			// Jump to the first start whose window holds the next event.
			if lo < len(points) {
				k := (points[lo].TimestampUs-sizeUs-first)/stepUs + 1
				if next := first + k*stepUs; next > start+stepUs {
					start = next - stepUs
				}
			}
			continue
		}
		w := Window{WindowStart: start, WindowEnd: end, EventCount: hi - lo, TotalCost: NaN}
		var lat, cost []float64
		for _, p := range points[lo:hi] {
			if !math.IsNaN(p.LatencyMs) {
				lat = append(lat, p.LatencyMs)
			}
			if !math.IsNaN(p.CostUSD) {
				cost = append(cost, p.CostUSD)
			}
			switch p.Success {
			case 1:
				w.SuccessCount++
			case 0:
				w.FailureCount++
			}
		}
		w.MeanLatency = Null(Mean(lat))
		q := Percentiles(lat, 50, 95)
		w.P50Latency, w.P95Latency = Null(q[0]), Null(q[1])
		if len(cost) > 0 {
			w.TotalCost = Null(Sum(cost))
		}
		out = append(out, w)
	}
	return out
}

func byTime(a, b Point) int { return cmp.Compare(a.TimestampUs, b.TimestampUs) }
