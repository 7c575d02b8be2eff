package analysis

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
)

// PairList is the per-sample view of a paired comparison (SPEC §13, GET
// /api/v1/compare/pairs): which samples the treatment changed, and by how
// much. Improved, Regressed and Ties count every pair, Pairs holds the
// largest differences first.
type PairList struct {
	Key       string `json:"key"`
	Metric    string `json:"metric"`
	Improved  int    `json:"improved"`
	Regressed int    `json:"regressed"`
	Ties      int    `json:"ties"`
	Pairs     []Pair `json:"pairs"`
}

// Pair is one sample's value in each arm (the mean of its events there)
// and the difference, treatment − baseline.
type Pair struct {
	SampleID  string `json:"sample_id"`
	Baseline  Null   `json:"baseline"`
	Treatment Null   `json:"treatment"`
	Diff      Null   `json:"diff"`
}

// PairMetrics names the metrics Pairs accepts, for messages.
const PairMetrics = "success, latency, cost or score:<name>"

// pairMetric is the metric's index among a sample's figures (a score's is
// found per arm), and whether higher values are better.
func pairMetric(metric string) (k int, score string, higherIsBetter bool, err error) {
	switch {
	case metric == "success":
		return metricSuccess, "", true, nil
	case metric == "latency":
		return metricLatency, "", false, nil
	case metric == "cost":
		return metricCost, "", false, nil
	case strings.HasPrefix(metric, "score:") && len(metric) > len("score:"):
		return metricScores, metric[len("score:"):], true, nil
	}
	return 0, "", false, fmt.Errorf("unknown metric %q: want %s", metric, PairMetrics)
}

// Pairs lists the samples both arms answered with metric (success,
// latency, cost or score:<name>) defined in both, sorted by |diff|
// descending, then sample id; at most limit of them (limit ≤ 0: all).
func Pairs(baseline, treatment []Point, metric string, limit int) (PairList, error) {
	k, score, higher, err := pairMetric(metric)
	if err != nil {
		return PairList{}, err
	}
	out := PairList{Key: PairKey, Metric: metric, Pairs: []Pair{}}
	var b, t sample
	var wg sync.WaitGroup
	wg.Go(func() { b = collect(baseline, true, false) })
	t = collect(treatment, true, false)
	wg.Wait()
	kb, kt := k, k
	if score != "" {
		cb, okb := b.scores.index[score]
		ct, okt := t.scores.index[score]
		if !okb || !okt {
			return out, nil
		}
		kb, kt = metricScores+cb, metricScores+ct
	}
	for j, kk := range join(&b.bySample, &t.bySample) {
		if kk < 0 {
			continue
		}
		bv, tv := b.bySample.mean(j, kb), t.bySample.mean(int(kk), kt)
		if math.IsNaN(bv) || math.IsNaN(tv) {
			continue
		}
		d := tv - bv
		switch {
		case d == 0:
			out.Ties++
		case (d > 0) == higher:
			out.Improved++
		default:
			out.Regressed++
		}
		out.Pairs = append(out.Pairs, Pair{SampleID: b.bySample.ids[j], Baseline: Null(bv), Treatment: Null(tv), Diff: Null(d)})
	}
	slices.SortFunc(out.Pairs, func(x, y Pair) int {
		if c := cmp.Compare(math.Abs(float64(y.Diff)), math.Abs(float64(x.Diff))); c != 0 {
			return c
		}
		return strings.Compare(x.SampleID, y.SampleID)
	})
	if limit > 0 && len(out.Pairs) > limit {
		out.Pairs = out.Pairs[:limit]
	}
	return out, nil
}

// cell shows a user's string in a table cell: quoted when a tab or a line
// break in it would break the table.
func cell(s string) string {
	if strings.ContainsAny(s, "\t\n\r\v\f") {
		return strconv.Quote(s)
	}
	return s
}

// precisionOf is the decimals the tables show metric's values with.
func precisionOf(metric string) int {
	switch metric {
	case "latency", "latency_mean", "latency_p95":
		return 2
	case "cost", "cost_mean":
		return 6
	}
	return 4
}

// WritePairs prints a pair list as a table: the counts over every pair,
// then the pairs listed.
func WritePairs(w io.Writer, title string, pl PairList) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	n := pl.Improved + pl.Regressed + pl.Ties
	prec := precisionOf(pl.Metric)
	p("%s\n", title)
	p("%s paired by %s: %d pairs; the treatment is better in %d, worse in %d, equal in %d\n", pl.Metric, pl.Key, n, pl.Improved, pl.Regressed, pl.Ties)
	if len(pl.Pairs) == 0 {
		return tw.Flush()
	}
	if len(pl.Pairs) < n {
		p("the %d largest differences (treatment − baseline):\n", len(pl.Pairs))
	} else {
		p("differences are treatment − baseline, largest first:\n")
	}
	p("%s\tbaseline\ttreatment\tdiff\n", pl.Key)
	for _, x := range pl.Pairs {
		p("%s\t%s\t%s\t%s\n", cell(x.SampleID), f(x.Baseline, prec), f(x.Treatment, prec), signed(x.Diff, prec))
	}
	return tw.Flush()
}
