package analysis

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// The regression gate (SPEC §13): for a CI pipeline, does a candidate run
// regress on a baseline beyond what the pipeline tolerates? It reads only
// a Report and a Comparison, so it judges a local data directory and the
// JSON of a running sidecar's /api/v1/compare alike.

// GateMetrics names the metrics a gate checks, for messages.
const GateMetrics = "latency_mean, latency_p95, cost_mean, success_rate or score:<name>"

// PairedGateMin is the number of pairs from which the gate judges a
// metric by its paired interval rather than the unpaired one.
const PairedGateMin = 10

// The verdicts of a check.
const (
	VerdictPass       = "pass"
	VerdictRegression = "regression"
	VerdictNoData     = "no_data"
)

// GateCheck is one METRIC:MARGIN: the metric regresses when the 95%
// interval of treatment − baseline lies entirely beyond Margin on the
// worse side. A Relative margin is Margin percent of the baseline value.
type GateCheck struct {
	Metric   string
	Margin   float64
	Relative bool
}

// ParseGateCheck reads METRIC:MARGIN, MARGIN a number ≥ 0 or "N%". A score
// name may hold colons (score:<name>:MARGIN), so the margin is what
// follows the last one.
func ParseGateCheck(s string) (GateCheck, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return GateCheck{}, fmt.Errorf("regression check %q: want METRIC:MARGIN, METRIC one of %s and MARGIN a number or N%%", s, GateMetrics)
	}
	metric, margin := strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+1:])
	if !gateMetric(metric) {
		return GateCheck{}, fmt.Errorf("regression check %q: unknown metric %q, want %s", s, metric, GateMetrics)
	}
	c := GateCheck{Metric: metric}
	if rest, ok := strings.CutSuffix(margin, "%"); ok {
		c.Relative, margin = true, strings.TrimSpace(rest)
	}
	m, err := strconv.ParseFloat(margin, 64)
	if err != nil || !(m >= 0) || math.IsInf(m, 0) {
		return GateCheck{}, fmt.Errorf("regression check %q: margin %q must be a number ≥ 0, or N%% of the baseline value", s, s[i+1:])
	}
	c.Margin = m
	return c, nil
}

func gateMetric(metric string) bool {
	switch metric {
	case "latency_mean", "latency_p95", "cost_mean", "success_rate":
		return true
	}
	return strings.HasPrefix(metric, "score:") && len(metric) > len("score:")
}

// MarginString is the margin as a check writes it: "5" or "5%".
func (c GateCheck) MarginString() string {
	s := strconv.FormatFloat(c.Margin, 'g', -1, 64)
	if c.Relative {
		s += "%"
	}
	return s
}

// String is the check as ParseGateCheck reads it.
func (c GateCheck) String() string { return c.Metric + ":" + c.MarginString() }

// GateVerdict is the judgement of one check: the difference treatment −
// baseline, its 95% interval and how it was computed (Method: "paired_t",
// "welch", "newcombe" or "bootstrap"), and the verdict: "pass",
// "regression", or "no_data" when there is no interval to judge.
type GateVerdict struct {
	Metric  string  `json:"metric"`
	Margin  string  `json:"margin"`
	Diff    Null    `json:"diff"`
	CI95    [2]Null `json:"ci95"`
	Method  string  `json:"method"`
	Verdict string  `json:"verdict"`
	// Threshold is the margin in the metric's units, signed: a regression
	// is an interval entirely above a positive one (latency, cost) or
	// below a negative one (success, scores). Null when a relative margin
	// has no baseline value.
	Threshold Null `json:"-"`
}

// GateResult is every check's verdict. Passed is true when every check
// passed; MissingData when some check had no data, which a pipeline must
// not read as a pass.
type GateResult struct {
	Passed      bool          `json:"passed"`
	Checks      []GateVerdict `json:"checks"`
	MissingData bool          `json:"-"`
}

// ExitCode is the gate command's exit status: 2 when data was missing, 1
// on a regression, 0 when every check passed.
func (r GateResult) ExitCode() int {
	switch {
	case r.MissingData:
		return 2
	case !r.Passed:
		return 1
	}
	return 0
}

// Gate judges treatment against baseline by checks: c is the treatment's
// comparison with the baseline, whose own report gives the value relative
// margins and latency_p95 are taken of. A metric with at least
// PairedGateMin pairs is judged by its paired interval, unless that is
// undefined (the differences do not vary); otherwise by the unpaired one;
// latency_p95 always by the bootstrap interval of the difference.
func Gate(baseline Report, c Comparison, checks []GateCheck) GateResult {
	r := GateResult{Passed: true, Checks: make([]GateVerdict, 0, len(checks))}
	for _, ck := range checks {
		v := gateOne(baseline, c, ck)
		switch v.Verdict {
		case VerdictRegression:
			r.Passed = false
		case VerdictNoData:
			r.Passed, r.MissingData = false, true
		}
		r.Checks = append(r.Checks, v)
	}
	return r
}

func gateOne(baseline Report, c Comparison, ck GateCheck) GateVerdict {
	v := GateVerdict{Metric: ck.Metric, Margin: ck.MarginString(), Diff: NaN, CI95: [2]Null{NaN, NaN}, Threshold: NaN, Verdict: VerdictNoData}
	var base Null
	worseHigher := higherIsWorse(ck.Metric)
	switch {
	case ck.Metric == "latency_mean":
		base = baseline.Latency.Mean
		v.Diff, v.CI95, v.Method = pickInterval(c.Paired.Latency, c.Latency.DiffMean, c.Latency.DiffMeanCI95, "welch")
	case ck.Metric == "latency_p95":
		base = baseline.Latency.P95
		v.Diff, v.CI95, v.Method = c.Latency.DiffP95, c.Latency.DiffP95CI95, "bootstrap"
	case ck.Metric == "cost_mean":
		base = baseline.Cost.MeanPerRequest
		v.Diff, v.CI95, v.Method = pickInterval(c.Paired.Cost, c.Cost.DiffMeanPerRequest, c.Cost.DiffMeanPerRequestCI95, "welch")
	case ck.Metric == "success_rate":
		base = baseline.Reliability.SuccessRate
		v.Diff, v.CI95, v.Method = pickInterval(c.Paired.Success.PairedStats, c.SuccessRate.Diff, c.SuccessRate.DiffCI95, "newcombe")
	case strings.HasPrefix(ck.Metric, "score:"):
		name := ck.Metric[len("score:"):]
		base = NaN
		if d, ok := baseline.Scores[name]; ok {
			base = d.Mean
		}
		// A score neither arm has is not in the maps: no data, not zeros.
		s, ok := c.Scores[name]
		if !ok {
			s = ScoreComparison{MeanDiff: MeanDiff{DiffMean: NaN, DiffMeanCI95: [2]Null{NaN, NaN}}}
		}
		p, ok := c.Paired.Scores[name]
		if !ok {
			p = PairedStats{}
		}
		v.Diff, v.CI95, v.Method = pickInterval(p, s.DiffMean, s.DiffMeanCI95, "welch")
	default:
		return v
	}
	m := ck.Margin
	if ck.Relative {
		m = ck.Margin / 100 * math.Abs(float64(base))
	}
	v.Threshold = Null(m)
	if !worseHigher {
		v.Threshold = Null(0 - m) // 0 − 0 is +0, not −0
	}
	lo, hi := v.CI95[0], v.CI95[1]
	if !lo.Valid() || !hi.Valid() || !v.Threshold.Valid() {
		return v
	}
	v.Verdict = VerdictPass
	if worseHigher && float64(lo) > m || !worseHigher && float64(hi) < -m {
		v.Verdict = VerdictRegression
	}
	return v
}

// higherIsWorse tells whether a higher value of metric is worse: latency
// and cost; success and scores are better higher.
func higherIsWorse(metric string) bool {
	return metric == "latency_mean" || metric == "latency_p95" || metric == "cost_mean"
}

// pickInterval is the paired interval when there are enough pairs and it
// is defined, else the unpaired one.
func pickInterval(p PairedStats, diff Null, ci [2]Null, method string) (Null, [2]Null, string) {
	if p.N >= PairedGateMin && p.DiffMeanCI95[0].Valid() && p.DiffMeanCI95[1].Valid() {
		return p.DiffMean, p.DiffMeanCI95, "paired_t"
	}
	return diff, ci, method
}

// WriteGate prints the gate's verdicts as a table, then the overall one.
func WriteGate(w io.Writer, r GateResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("metric\tmargin\tregression when the CI is\tdiff\t95%% CI\tmethod\tverdict\n")
	var regressed, missing []string
	for _, v := range r.Checks {
		prec := precisionOf(v.Metric)
		bound := "—"
		switch {
		case !v.Threshold.Valid():
		case higherIsWorse(v.Metric):
			bound = "above " + signed(v.Threshold, prec)
		default:
			bound = "below " + signed(v.Threshold, prec)
		}
		verdict := v.Verdict
		switch v.Verdict {
		case VerdictRegression:
			verdict = "REGRESSION"
			regressed = append(regressed, v.Metric)
		case VerdictNoData:
			verdict = "no data"
			missing = append(missing, v.Metric)
		}
		method := v.Method
		if method == "" {
			method = "—"
		}
		p("%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(v.Metric), v.Margin, bound, signed(v.Diff, prec), ci(v.CI95, prec), method, verdict)
	}
	switch {
	case len(missing) > 0:
		p("\nNO VERDICT: no data to judge %s", strings.Join(missing, ", "))
		if len(regressed) > 0 {
			p("; regressed: %s", strings.Join(regressed, ", "))
		}
		p("\n")
	case len(regressed) > 0:
		p("\nFAILED: regressed beyond the margin: %s\n", strings.Join(regressed, ", "))
	default:
		p("\npassed: no metric regressed beyond its margin\n")
	}
	return tw.Flush()
}
