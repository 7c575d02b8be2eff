package analysis

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// PairKey is what pairs the events of two arms: their sample_id.
const PairKey = "sample_id"

// Paired compares a treatment with the baseline sample by sample (SPEC
// §13): a sample is a sample_id, and its value in an arm is the mean of
// its events' values there (repetitions). NPairs counts the samples in
// both arms, BaselineOnly and TreatmentOnly those in one; each metric's N
// counts the pairs with that metric defined in both.
type Paired struct {
	Key           string                 `json:"key"`
	NPairs        int                    `json:"n_pairs"`
	BaselineOnly  int                    `json:"baseline_only"`
	TreatmentOnly int                    `json:"treatment_only"`
	Latency       PairedStats            `json:"latency"`
	Cost          PairedStats            `json:"cost"`
	Success       PairedSuccess          `json:"success"`
	Scores        map[string]PairedStats `json:"scores"`
}

// PairedStats compares paired values, d = treatment − baseline per pair:
// the paired t-test with its 95% interval of mean(d), the Wilcoxon
// signed-rank test, and how many pairs the treatment improved, regressed
// or left as they were. Everything that needs two pairs, or differences
// that vary, is null without them.
type PairedStats struct {
	N             int     `json:"n"`
	BaselineMean  Null    `json:"baseline_mean"`
	TreatmentMean Null    `json:"treatment_mean"`
	DiffMean      Null    `json:"diff_mean"`
	DiffMeanCI95  [2]Null `json:"diff_mean_ci95"`
	T             Null    `json:"t"`
	DF            Null    `json:"df"`
	P             Null    `json:"p"`
	WilcoxonW     Null    `json:"wilcoxon_w"`
	WilcoxonP     Null    `json:"wilcoxon_p"`
	Improved      int     `json:"improved"`
	Regressed     int     `json:"regressed"`
	Ties          int     `json:"ties"`
}

// PairedSuccess is the paired comparison of success, with McNemar's test
// over the pairs whose success is 0 or 1 in both arms.
type PairedSuccess struct {
	PairedStats
	McNemar McNemar `json:"mcnemar"`
}

// McNemar is McNemar's exact test: B pairs succeeded in the baseline only,
// C in the treatment only; P = min(1, 2·BinomCDF(min(B, C); B + C, ½)),
// null when B + C = 0.
type McNemar struct {
	B int  `json:"b"`
	C int  `json:"c"`
	P Null `json:"p"`
}

// PairedTest compares t[i] with b[i] (one sample's treatment and baseline
// values): the paired t-test (scipy.stats.ttest_rel) with the interval
// mean(d) ± t(0.975, n−1)·sd(d)/√n, and the Wilcoxon signed-rank test with
// zero differences dropped, average ranks for ties, and the tie-corrected
// normal approximation without continuity correction; W = min(W+, W−).
// higherIsBetter tells which sign of d is an improvement.
func PairedTest(b, t []float64, higherIsBetter bool) PairedStats {
	n := min(len(b), len(t))
	out := PairedStats{N: n, BaselineMean: NaN, TreatmentMean: NaN, DiffMean: NaN, DiffMeanCI95: [2]Null{NaN, NaN},
		T: NaN, DF: NaN, P: NaN, WilcoxonW: NaN, WilcoxonP: NaN}
	if n == 0 {
		return out
	}
	b, t = b[:n], t[:n]
	d := make([]float64, n)
	for i := range d {
		d[i] = t[i] - b[i]
		switch {
		case d[i] == 0:
			out.Ties++
		case (d[i] > 0) == higherIsBetter:
			out.Improved++
		default:
			out.Regressed++
		}
	}
	mean := Mean(d)
	out.BaselineMean, out.TreatmentMean, out.DiffMean = Null(Mean(b)), Null(Mean(t)), Null(mean)
	if n < 2 {
		return out
	}
	df := float64(n - 1)
	out.DF = Null(df)
	if se := StdDev(d) / math.Sqrt(float64(n)); se > 0 && !math.IsInf(se, 0) {
		tv := mean / se
		h := t975(n-1) * se
		out.T, out.P = Null(tv), Null(studentP2(tv, df))
		out.DiffMeanCI95 = [2]Null{Null(mean - h), Null(mean + h)}
	}
	out.WilcoxonW, out.WilcoxonP = wilcoxon(d)
	return out
}

// wilcoxon is the two-sided Wilcoxon signed-rank test of d: W = min(W+,
// W−) over the nonzero differences ranked by magnitude, and its p from the
// normal approximation with the tie correction, z = (W − n(n+1)/4)/σ,
// σ² = (n(n+1)(2n+1) − Σ(t³ − t)/2)/24. Null with no nonzero difference.
func wilcoxon(d []float64) (Null, Null) {
	// The positive differences from the front, the negated negative ones
	// from the back; each part sorted, one merge walks the tie groups.
	buf := make([]float64, len(d))
	np, nn := 0, len(d)
	for _, x := range d {
		switch {
		case x > 0:
			buf[np] = x
			np++
		case x < 0:
			nn--
			buf[nn] = -x
		}
	}
	pos, neg := buf[:np], buf[nn:]
	n := len(pos) + len(neg)
	if n == 0 {
		return NaN, NaN
	}
	slices.Sort(pos)
	slices.Sort(neg)
	var wPlus, tie float64
	i, j, rank := 0, 0, 0
	for i < len(pos) || j < len(neg) {
		var v float64
		switch {
		case i == len(pos):
			v = neg[j]
		case j == len(neg):
			v = pos[i]
		default:
			v = min(pos[i], neg[j])
		}
		cp, cn := 0, 0
		for i < len(pos) && pos[i] == v {
			i++
			cp++
		}
		for j < len(neg) && neg[j] == v {
			j++
			cn++
		}
		c := cp + cn
		wPlus += float64(2*rank+c+1) / 2 * float64(cp) // ranks rank+1 .. rank+c
		if c > 1 {
			fc := float64(c)
			tie += fc*fc*fc - fc
		}
		rank += c
	}
	fn := float64(n)
	total := fn * (fn + 1) / 2
	w := min(wPlus, total-wPlus)
	sigma := math.Sqrt((fn*(fn+1)*(2*fn+1) - tie/2) / 24)
	if !(sigma > 0) {
		return Null(w), NaN
	}
	return Null(w), Null(normalP2((w - total/2) / sigma))
}

// McNemarTest is McNemar's exact test of b discordant pairs one way and c
// the other.
func McNemarTest(b, c int) McNemar {
	m := McNemar{B: b, C: c, P: NaN}
	if b+c <= 0 {
		return m
	}
	// Binomial's CDF is the regularised incomplete beta I_½(n−k, k+1)
	// computed directly (k ≤ n/2 keeps it on the side that needs no
	// complement), so a far-tail p keeps its relative precision.
	cdf := distuv.Binomial{N: float64(b + c), P: 0.5}.CDF(float64(min(b, c)))
	m.P = Null(math.Min(1, 2*cdf))
	return m
}
