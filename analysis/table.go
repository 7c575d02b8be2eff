package analysis

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Alpha is the significance level the tables mark with "*".
const Alpha = 0.05

func f(n Null, prec int) string {
	if !n.Valid() {
		return "—"
	}
	return strconv.FormatFloat(float64(n), 'f', prec, 64)
}

// g shows n with prec significant digits.
func g(n Null, prec int) string {
	if !n.Valid() {
		return "—"
	}
	return strconv.FormatFloat(float64(n), 'g', prec, 64)
}

func signed(n Null, prec int) string {
	if !n.Valid() {
		return "—"
	}
	s := strconv.FormatFloat(float64(n), 'f', prec, 64)
	if n > 0 {
		s = "+" + s
	}
	return s
}

func ci(c [2]Null, prec int) string {
	if !c[0].Valid() || !c[1].Valid() {
		return "—"
	}
	return "[" + strconv.FormatFloat(float64(c[0]), 'f', prec, 64) + ", " + strconv.FormatFloat(float64(c[1]), 'f', prec, 64) + "]"
}

// pval shows a p-value, starred when below Alpha.
func pval(p Null) string {
	if !p.Valid() {
		return "—"
	}
	s := strconv.FormatFloat(float64(p), 'g', 3, 64)
	if p < Alpha {
		s += " *"
	}
	return s
}

func flag(b *bool) string {
	switch {
	case b == nil:
		return "—"
	case *b:
		return "met"
	}
	return "missed"
}

// WriteReport prints a report as aligned tables a person can read.
func WriteReport(w io.Writer, title string, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("%s\n", title)
	if s := r.Summary; s.TimeRange.Start != nil {
		p("events\t%d, from %s to %s (%s)\n", s.TotalEvents, time.UnixMicro(*s.TimeRange.Start).UTC().Format(time.RFC3339),
			time.UnixMicro(*s.TimeRange.End).UTC().Format(time.RFC3339), time.Duration(float64(s.DurationSeconds)*1e9).Round(time.Millisecond))
	} else {
		p("events\t0\n")
	}
	l := r.Latency
	p("\nlatency (ms)\tcount\tmean\tmedian\tstd dev\tmin\tmax\tp90\tp95\tp99\n")
	p("\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Count, f(l.Mean, 2), f(l.Median, 2), f(l.StdDev, 2), f(l.Min, 2), f(l.Max, 2), f(l.P90, 2), f(l.P95, 2), f(l.P99, 2))
	c := r.Cost
	p("\ncost (USD)\tcount\ttotal\tmean/request\tmedian/request\tper 1k requests\tper 1M requests\n")
	p("\t%d\t%s\t%s\t%s\t%s\t%s\n", c.Count, f(c.Total, 6), f(c.MeanPerRequest, 6), f(c.MedianPerRequest, 6), f(c.CostPer1kRequests, 4), f(c.CostPer1mRequests, 2))
	rel := r.Reliability
	p("\nreliability\tjudged\tsuccessful\tfailed\tsuccess rate\t95%% CI (Wilson)\tSLA 99%%\tSLA 99.9%%\tSLA 99.99%%\n")
	p("\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", rel.Judged, rel.Successful, rel.Failed, f(rel.SuccessRate, 4), ci(rel.SuccessRateCI95, 4), flag(rel.SLA99), flag(rel.SLA999), flag(rel.SLA9999))
	t := r.Tokens
	p("\ntokens\tcount\tprompt\tcompletion\ttotal\tmean prompt\tmean completion\tmean total\n")
	p("\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Count, t.TotalPrompt, t.TotalCompletion, t.Total, f(t.MeanPrompt, 1), f(t.MeanCompletion, 1), f(t.MeanTotal, 1))
	if len(r.Scores) > 0 {
		p("\nscores\tcount\tmean\t95%% CI (t)\tstd dev\tmedian\tmin\tmax\n")
		for _, name := range sortedNames(r.Scores) {
			d := r.Scores[name]
			p("%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", cell(name), d.Count, f(d.Mean, 4), ci(d.MeanCI95, 4), f(d.StdDev, 4), f(d.Median, 4), f(d.Min, 4), f(d.Max, 4))
		}
	}
	writeClustered(p, r)
	p("\nevents by name\tcount\n")
	for _, name := range sortedKeys(r.Summary.EventTypes) {
		p("%s\t%d\n", name, r.Summary.EventTypes[name])
	}
	return tw.Flush()
}

// writeClustered prints the means with their clustered standard errors
// and intervals, when the report has them.
func writeClustered(p func(string, ...any), r Report) {
	if r.Latency.MeanSEClustered == nil {
		return
	}
	p("\nclustered\tn\tmean\tSE (clustered)\t95%% CI (clustered)\n")
	row := func(label string, n int64, mean Null, se *Null, c *[2]Null, prec int) {
		if se != nil && c != nil {
			p("%s\t%d\t%s\t%s\t%s\n", label, n, f(mean, prec), g(*se, 4), ci(*c, prec))
		}
	}
	row("latency (ms)", int64(r.Latency.Count), r.Latency.Mean, r.Latency.MeanSEClustered, r.Latency.MeanCI95Clustered, 2)
	row("cost/request (USD)", int64(r.Cost.Count), r.Cost.MeanPerRequest, r.Cost.MeanSEClustered, r.Cost.MeanCI95Clustered, 6)
	rel := r.Reliability
	row("success rate", rel.Judged, rel.SuccessRate, rel.SuccessRateSEClustered, rel.SuccessRateCI95Clustered, 4)
	for _, name := range sortedNames(r.Scores) {
		d := r.Scores[name]
		row("score "+cell(name), int64(d.Count), d.Mean, d.MeanSEClustered, d.MeanCI95Clustered, 4)
	}
}

// clusteredRow prints a difference's clustered interval under its row, in
// the 95% CI column, when the comparison has one.
func clusteredRow(p func(string, ...any), c *[2]Null, prec int) {
	if c != nil {
		p("  clustered\t\t\t\t%s\t\t\n", ci(*c, prec))
	}
}

func sortedKeys(m map[string]int64) []string { return sortedNames(m) }

// sortedNames are the keys of m in order.
func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// seqCS shows a confidence sequence and its anytime-valid p.
func seqCS(s Sequential, prec int) string {
	if !s.CS95[0].Valid() || !s.CS95[1].Valid() {
		return "—"
	}
	return ci(s.CS95, prec) + " p=" + pval(s.P)
}

// writeSRM prints the sample-ratio check, loudly when it fails: a split
// other than the planned one means assignment or logging lost events, and
// every difference below may be biased.
func writeSRM(w io.Writer, ids []string, s SRM) {
	if s.Mismatch == nil {
		fmt.Fprintf(w, "sample ratio: no events to check\n")
		return
	}
	var parts []string
	for i, c := range s.Counts {
		parts = append(parts, fmt.Sprintf("%s %d (planned %.1f%%)", ids[i], c, 100*s.ExpectedShares[i]))
	}
	verdict := "as planned"
	if *s.Mismatch {
		verdict = fmt.Sprintf("SAMPLE-RATIO MISMATCH (p < %g): events were lost or assigned unevenly; check that before trusting any difference below", SRMThreshold)
	}
	fmt.Fprintf(w, "sample ratio: %s; χ²=%s, df=%d, p=%s — %s\n", strings.Join(parts, ", "), f(s.Chi2, 2), s.DF, g(s.P, 3), verdict)
}

// WriteComparison prints the sample-ratio check, then each treatment
// against the baseline; p-values below Alpha are starred (Holm-adjusted
// ones when there are several treatments). Beside each 95% interval of a
// difference of means is its confidence sequence, the interval to read
// when the experiment has been looked at before; with clusters, a row
// under it gives the clustered interval.
func WriteComparison(w io.Writer, ids []string, reports []Report, comps []Comparison, srm SRM) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("baseline %s (%d events); differences are treatment − baseline; * p < %g\n", ids[0], reports[0].Summary.TotalEvents, Alpha)
	writeSRM(tw, ids, srm)
	for i, c := range comps {
		id := ids[i+1]
		holm := c.Latency.WelchPHolm != nil
		pick := func(p Null, adj *Null) Null {
			if holm && adj != nil {
				return *adj
			}
			return p
		}
		note := ""
		if holm {
			note = " (Holm-adjusted)"
		}
		l := c.Latency
		p("\n%s (%d events, %+d)\t%s\t%s\tdiff\t95%% CI\tp%s\tanytime-valid 95%% CS\n", id, reports[i+1].Summary.TotalEvents, c.EventCountDifference, ids[0], id, note)
		p("latency mean (ms)\t%s\t%s\t%s\t%s\t%s (Welch t=%s, df=%s)\t%s\n", f(l.BaselineMean, 2), f(l.TreatmentMean, 2), signed(l.DiffMean, 2),
			ci(l.DiffMeanCI95, 2), pval(pick(l.WelchP, l.WelchPHolm)), f(l.WelchT, 3), f(l.WelchDF, 1), seqCS(l.Sequential, 2))
		clusteredRow(p, l.DiffMeanCI95Clustered, 2)
		p("latency change\t\t\t%s %%\t\tHedges' g %s\t\n", signed(l.RelativeChangePct, 2), f(l.HedgesG, 3))
		p("latency distribution\t\t\t\t\t%s (Mann–Whitney U=%s)\t\n", pval(pick(l.MannWhitneyP, l.MannWhitneyPHolm)), f(l.MannWhitneyU, 0))
		p("latency median (ms)\t%s\t%s\t%s\t%s\tbootstrap, %d resamples, seed %d\t\n", f(reports[0].Latency.Median, 2), f(reports[i+1].Latency.Median, 2),
			signed(l.DiffMedian, 2), ci(l.DiffMedianCI95, 2), l.BootstrapResamples, l.Seed)
		p("latency p95 (ms)\t%s\t%s\t%s\t%s\t\t\n", f(reports[0].Latency.P95, 2), f(reports[i+1].Latency.P95, 2), signed(l.DiffP95, 2), ci(l.DiffP95CI95, 2))
		p("latency p99 (ms)\t%s\t%s\t%s\t%s\t\t\n", f(reports[0].Latency.P99, 2), f(reports[i+1].Latency.P99, 2), signed(l.DiffP99, 2), ci(l.DiffP99CI95, 2))
		s := c.SuccessRate
		p("success rate\t%s\t%s\t%s\t%s\t%s (two-proportion z)\t%s\n", f(s.Baseline, 4), f(s.Treatment, 4), signed(s.Diff, 4), ci(s.DiffCI95, 4),
			pval(pick(s.P, s.PHolm)), seqCS(s.Sequential, 4))
		clusteredRow(p, s.DiffCI95Clustered, 4)
		co := c.Cost
		p("cost/request (USD)\t%s\t%s\t%s\t%s\t%s (Welch)\t%s\n", f(co.BaselineMeanPerRequest, 6), f(co.TreatmentMeanPerRequest, 6), signed(co.DiffMeanPerRequest, 6),
			ci(co.DiffMeanPerRequestCI95, 6), pval(pick(co.P, co.PHolm)), seqCS(co.Sequential, 6))
		clusteredRow(p, co.DiffMeanPerRequestCI95Clustered, 6)
		p("cost/success (USD)\t%s\t%s\t\t\t\t\n", f(co.BaselineCostPerSuccess, 6), f(co.TreatmentCostPerSuccess, 6))
		p("cost total (USD)\t%s\t%s\t%s\t\t\t\n", f(reports[0].Cost.Total, 4), f(reports[i+1].Cost.Total, 4), signed(co.DiffTotal, 4))
		for _, name := range sortedNames(c.Scores) {
			sc := c.Scores[name]
			p("score %s\t%s\t%s\t%s\t%s\t%s (Welch t=%s, df=%s)\t%s\n", cell(name), f(sc.BaselineMean, 4), f(sc.TreatmentMean, 4), signed(sc.DiffMean, 4),
				ci(sc.DiffMeanCI95, 4), pval(pick(sc.WelchP, sc.WelchPHolm)), f(sc.WelchT, 3), f(sc.WelchDF, 1), seqCS(sc.Sequential, 4))
			clusteredRow(p, sc.DiffMeanCI95Clustered, 4)
			p("score %s distribution\t\t\t\t\t%s (Mann–Whitney U=%s)\t\n", cell(name), pval(pick(sc.MannWhitneyP, sc.MannWhitneyPHolm)), f(sc.MannWhitneyU, 0))
		}
		writePaired(tw, c.Paired)
	}
	return tw.Flush()
}

// writePaired prints the paired comparison, when the arms have samples:
// per metric the mean paired difference with its paired t interval and p,
// the Wilcoxon p, and how many samples the treatment improved, regressed
// or left equal; then McNemar's test of success.
func writePaired(w io.Writer, pd Paired) {
	if pd.NPairs == 0 && pd.BaselineOnly == 0 && pd.TreatmentOnly == 0 {
		return
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("\npaired by %s: %d samples in both arms (%d in the baseline only, %d in the treatment only); a sample's value is the mean of its events\n",
		pd.Key, pd.NPairs, pd.BaselineOnly, pd.TreatmentOnly)
	if pd.NPairs == 0 {
		return
	}
	p("paired\tn\tdiff\t95%% CI (paired t)\tp\tWilcoxon p\timproved\tregressed\tties\n")
	row := func(label string, s PairedStats, prec int) {
		p("%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", label, s.N, signed(s.DiffMean, prec), ci(s.DiffMeanCI95, prec), pval(s.P), pval(s.WilcoxonP), s.Improved, s.Regressed, s.Ties)
	}
	row("latency (ms)", pd.Latency, 2)
	row("cost (USD)", pd.Cost, 6)
	row("success", pd.Success.PairedStats, 4)
	for _, name := range sortedNames(pd.Scores) {
		row("score "+cell(name), pd.Scores[name], 4)
	}
	if m := pd.Success.McNemar; pd.Success.N > 0 {
		p("McNemar (pairs judged 0 or 1 in both arms): %d succeeded in the baseline only, %d in the treatment only; p=%s\n", m.B, m.C, pval(m.P))
	}
}

// WritePower prints a power plan.
func WritePower(w io.Writer, title string, pw Power) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	n := "—"
	if pw.NPerArm != nil {
		n = strconv.FormatInt(*pw.NPerArm, 10)
	}
	p("%s\n", title)
	p("baseline %s\tn %d\tmean %s\tvariance %s\n", pw.Metric, pw.N, g(pw.Mean, 6), g(pw.Variance, 6))
	p("to detect a difference of %g (two-sided α = %g, power %g)\tevents per arm: %s\n", pw.MDE, pw.Alpha, pw.Power, n)
	p("with %d events per arm, as this experiment has\tdetectable difference: %s\n", pw.N, g(pw.MDEAtN, 4))
	return tw.Flush()
}
