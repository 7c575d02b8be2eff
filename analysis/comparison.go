package analysis

import (
	"math"
	"slices"
	"sync"
)

// MeanDiff is the difference of a treatment's mean and the baseline's with
// Welch's test (SPEC §8): a latency and a score comparison begin with it.
type MeanDiff struct {
	BaselineMean  Null    `json:"baseline_mean"`
	TreatmentMean Null    `json:"treatment_mean"`
	DiffMean      Null    `json:"diff_mean"`
	DiffMeanCI95  [2]Null `json:"diff_mean_ci95"`
	// DiffMeanCI95Clustered is DiffMean's clustered interval (SPEC §14),
	// only with clusters.
	DiffMeanCI95Clustered *[2]Null `json:"diff_mean_ci95_clustered,omitempty"`
	WelchT                Null     `json:"welch_t"`
	WelchDF               Null     `json:"welch_df"`
	WelchP                Null     `json:"welch_p"`
	WelchPHolm            *Null    `json:"welch_p_holm,omitempty"`
}

// meanDiff compares the means of t and b.
func meanDiff(b, t []float64) MeanDiff {
	w := WelchTest(b, t)
	return MeanDiff{BaselineMean: meanOrNull(b), TreatmentMean: meanOrNull(t),
		DiffMean: w.Diff, DiffMeanCI95: w.CI95, WelchT: w.T, WelchDF: w.DF, WelchP: w.P}
}

// LatencyComparison compares latency (ms) of a treatment with the baseline.
type LatencyComparison struct {
	MeanDiff
	RelativeChangePct  Null    `json:"relative_change_pct"`
	HedgesG            Null    `json:"hedges_g"`
	MannWhitneyU       Null    `json:"mann_whitney_u"`
	MannWhitneyP       Null    `json:"mann_whitney_p"`
	MannWhitneyPHolm   *Null   `json:"mann_whitney_p_holm,omitempty"`
	DiffMedian         Null    `json:"diff_median"`
	DiffMedianCI95     [2]Null `json:"diff_median_ci95"`
	DiffP95            Null    `json:"diff_p95"`
	DiffP95CI95        [2]Null `json:"diff_p95_ci95"`
	DiffP99            Null    `json:"diff_p99"`
	DiffP99CI95        [2]Null `json:"diff_p99_ci95"`
	BootstrapResamples int     `json:"bootstrap_resamples"`
	Seed               uint64  `json:"seed"`
	// Sequential is the anytime-valid interval of DiffMean.
	Sequential Sequential `json:"sequential"`
}

// SuccessComparison compares success rates.
type SuccessComparison struct {
	Proportions
	PHolm *Null `json:"p_holm,omitempty"`
	// DiffCI95Clustered is Diff's clustered interval (SPEC §14), only
	// with clusters.
	DiffCI95Clustered *[2]Null   `json:"diff_ci95_clustered,omitempty"`
	Sequential        Sequential `json:"sequential"`
}

// CostComparison compares cost per request (USD).
type CostComparison struct {
	BaselineMeanPerRequest  Null    `json:"baseline_mean_per_request"`
	TreatmentMeanPerRequest Null    `json:"treatment_mean_per_request"`
	DiffMeanPerRequest      Null    `json:"diff_mean_per_request"`
	DiffMeanPerRequestCI95  [2]Null `json:"diff_mean_per_request_ci95"`
	// DiffMeanPerRequestCI95Clustered is DiffMeanPerRequest's clustered
	// interval (SPEC §14), only with clusters.
	DiffMeanPerRequestCI95Clustered *[2]Null `json:"diff_mean_per_request_ci95_clustered,omitempty"`
	WelchT                          Null     `json:"welch_t"`
	WelchDF                         Null     `json:"welch_df"`
	P                               Null     `json:"p"`
	PHolm                           *Null    `json:"p_holm,omitempty"`
	DiffTotal                       Null     `json:"diff_total"`
	BaselineCostPerSuccess          Null     `json:"baseline_cost_per_success"`
	TreatmentCostPerSuccess         Null     `json:"treatment_cost_per_success"`
	// Sequential is the anytime-valid interval of DiffMeanPerRequest.
	Sequential Sequential `json:"sequential"`
}

// Comparison is one treatment against the baseline (SPEC §8).
type Comparison struct {
	Latency              LatencyComparison `json:"latency"`
	SuccessRate          SuccessComparison `json:"success_rate"`
	Cost                 CostComparison    `json:"cost"`
	EventCountDifference int               `json:"event_count_difference"`
	// Scores compares each score either side has (SPEC §13); empty, never
	// null.
	Scores map[string]ScoreComparison `json:"scores"`
	// Paired compares the samples both arms answered (SPEC §13).
	Paired Paired `json:"paired"`
}

// CompareOptions set the bootstrap and the confidence sequences.
type CompareOptions struct {
	Resamples int    // 0: no bootstrap intervals (DefaultResamples is the API's default)
	Seed      uint64 // 0 means 1
	// SequentialTuning is N* of the confidence sequences; 0 means
	// DefaultSequentialTuning.
	SequentialTuning float64
	// Allocation weighs the experiments (baseline first) for the
	// sample-ratio check; nil means equal shares.
	Allocation []float64
	// Clustered adds each difference's clustered interval (SPEC §14), over
	// the points' clusters.
	Clustered bool
}

// DefaultResamples is the bootstrap's default number of resamples.
const DefaultResamples = 2000

type sample struct {
	latency, cost      []float64
	sortedLatency      []float64 // a sorted copy, for the rank test and the bootstrap (set by Compare)
	judged, successful int64
	events             int
	scores             scoreValues
	bySample           bySample // with paired
	// With clustered: the means' clustered standard errors (the scores'
	// are in scores).
	latencySE, costSE, successSE Null
}

// sampleOf collects the unpaired values of an arm.
func sampleOf(points []Point) sample { return collect(points, false, false) }

// collect collects an arm's values in one pass over its points; paired,
// also by sample id; clustered, also the clustered standard errors of the
// means.
func collect(points []Point, paired, clustered bool) sample {
	s := sample{events: len(points), latency: make([]float64, 0, len(points)), cost: make([]float64, 0, len(points))}
	s.scores.clustered = clustered
	s.scores.reserve(points)
	g := &s.bySample
	g.m = metricScores + len(s.scores.names)
	lastID, lastJ := "", int32(-1) // repetitions of a sample are often adjacent
	var groups clusters
	var latencyCl, costCl []int32
	var success successByCluster
	cluster := int32(noCluster)
	if clustered {
		latencyCl, costCl = make([]int32, 0, len(points)), make([]int32, 0, len(points))
	}
	for i := range points {
		p := &points[i]
		if clustered {
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
			s.latency = append(s.latency, p.LatencyMs)
		}
		if !math.IsNaN(p.CostUSD) {
			s.cost = append(s.cost, p.CostUSD)
		}
		if p.Success >= 0 {
			s.judged++
			if p.Success == 1 {
				s.successful++
			}
		}
		if len(p.Scores) > 0 {
			s.scores.add(p.Scores, cluster)
		}
		if paired && p.Sample != "" {
			if p.Sample != lastID {
				lastID, lastJ = p.Sample, g.sample(p.Sample)
			}
			g.add(lastJ, p, s.scores.last) // last: the columns of p's scores
		}
	}
	if paired {
		g.finish(points, &s.scores)
	}
	if clustered {
		var cs clusterSums
		s.latencySE = cs.clusteredSE(s.latency, latencyCl, groups.n())
		s.costSE = cs.clusteredSE(s.cost, costCl, groups.n())
		s.successSE = success.se()
		s.scores.setClusteredSE(&cs, groups.n())
	}
	return s
}

// Compare compares each of treatments with baseline. With more than one
// treatment every p-value is also given Holm-adjusted across treatments.
// Nothing fails for want of data: what cannot be computed is null.
func Compare(baseline []Point, treatments [][]Point, opts CompareOptions) []Comparison {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	// The arms are collected side by side, each on its own.
	arms := make([]sample, 1+len(treatments))
	var wg sync.WaitGroup
	for i := range arms {
		pts := baseline
		if i > 0 {
			pts = treatments[i-1]
		}
		wg.Go(func() {
			arms[i] = collect(pts, true, opts.Clustered)
			arms[i].scores.sortScores()
			arms[i].sortedLatency = slices.Clone(arms[i].latency)
			slices.Sort(arms[i].sortedLatency)
		})
	}
	wg.Wait()
	// Then each treatment's unpaired and paired comparisons, side by side.
	b := &arms[0]
	out := make([]Comparison, len(treatments))
	paired := make([]Paired, len(treatments))
	for i := range treatments {
		t := &arms[i+1]
		wg.Go(func() { out[i] = compareOne(b, t, opts) })
		wg.Go(func() { paired[i] = pairArms(b, t) })
	}
	wg.Wait()
	for i := range out {
		out[i].Paired = paired[i]
	}
	if len(treatments) > 1 {
		holm := func(get func(*Comparison) *Null, set func(*Comparison, *Null)) {
			ps := make([]Null, len(out))
			for i := range out {
				ps[i] = *get(&out[i])
			}
			for i, p := range Holm(ps) {
				set(&out[i], &p)
			}
		}
		holm(func(c *Comparison) *Null { return &c.Latency.WelchP }, func(c *Comparison, p *Null) { c.Latency.WelchPHolm = p })
		holm(func(c *Comparison) *Null { return &c.Latency.MannWhitneyP }, func(c *Comparison, p *Null) { c.Latency.MannWhitneyPHolm = p })
		holm(func(c *Comparison) *Null { return &c.SuccessRate.P }, func(c *Comparison, p *Null) { c.SuccessRate.PHolm = p })
		holm(func(c *Comparison) *Null { return &c.Cost.P }, func(c *Comparison, p *Null) { c.Cost.PHolm = p })
		holmScores(out)
	}
	return out
}

func meanOrNull(xs []float64) Null {
	if len(xs) == 0 {
		return NaN
	}
	return Null(Mean(xs))
}

func compareOne(b, t *sample, opts CompareOptions) Comparison {
	var c Comparison
	// Sort once for the rank test and the bootstrap.
	bs, ts := b.sortedLatency, t.sortedLatency
	mw := mannWhitneySorted(bs, ts)
	boot := bootstrapSorted(bs, ts, []float64{50, 95, 99}, opts.Resamples, opts.Seed)
	md := meanDiff(b.latency, t.latency)
	bm, tm := md.BaselineMean, md.TreatmentMean
	rel := NaN
	if bm.Valid() && tm.Valid() && bm != 0 {
		rel = Null((float64(tm) - float64(bm)) / float64(bm) * 100)
	}
	c.Latency = LatencyComparison{
		MeanDiff:          md,
		RelativeChangePct: rel, HedgesG: HedgesG(b.latency, t.latency),
		MannWhitneyU: mw.U, MannWhitneyP: mw.P,
		DiffMedian: boot[0].Diff, DiffMedianCI95: boot[0].CI95,
		DiffP95: boot[1].Diff, DiffP95CI95: boot[1].CI95,
		DiffP99: boot[2].Diff, DiffP99CI95: boot[2].CI95,
		BootstrapResamples: opts.Resamples, Seed: opts.Seed,
		Sequential: SequentialDiff(b.latency, t.latency, opts.SequentialTuning),
	}
	c.SuccessRate = SuccessComparison{Proportions: CompareProportions(b.successful, b.judged, t.successful, t.judged)}
	c.SuccessRate.Sequential = sequentialFrom(int(b.judged), int(t.judged), successVariance(b.successful, b.judged),
		successVariance(t.successful, t.judged), float64(c.SuccessRate.Diff), opts.SequentialTuning)
	cw := WelchTest(b.cost, t.cost)
	c.Cost = CostComparison{
		BaselineMeanPerRequest: meanOrNull(b.cost), TreatmentMeanPerRequest: meanOrNull(t.cost),
		DiffMeanPerRequest: cw.Diff, DiffMeanPerRequestCI95: cw.CI95, WelchT: cw.T, WelchDF: cw.DF, P: cw.P,
		DiffTotal: NaN, BaselineCostPerSuccess: perSuccess(b), TreatmentCostPerSuccess: perSuccess(t),
		Sequential: SequentialDiff(b.cost, t.cost, opts.SequentialTuning),
	}
	if len(b.cost) > 0 || len(t.cost) > 0 {
		c.Cost.DiffTotal = Null(Sum(t.cost) - Sum(b.cost))
	}
	c.EventCountDifference = t.events - b.events
	c.Scores = compareScores(&b.scores, &t.scores, opts.SequentialTuning)
	if opts.Clustered {
		c.Latency.DiffMeanCI95Clustered = clusteredDiffCI(c.Latency.DiffMean, b.latencySE, t.latencySE)
		c.Cost.DiffMeanPerRequestCI95Clustered = clusteredDiffCI(c.Cost.DiffMeanPerRequest, b.costSE, t.costSE)
		c.SuccessRate.DiffCI95Clustered = clusteredDiffCI(c.SuccessRate.Diff, b.successSE, t.successSE)
	}
	return c
}

// perSuccess is total cost over successful events.
func perSuccess(s *sample) Null {
	if s.successful == 0 || len(s.cost) == 0 {
		return NaN
	}
	return Null(Sum(s.cost) / float64(s.successful))
}
