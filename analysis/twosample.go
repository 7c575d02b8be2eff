package analysis

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// Every difference and signed statistic here is treatment − baseline.

// Welch is Welch's t-test for a difference of means, with the
// Welch–Satterthwaite degrees of freedom and a 95% interval.
type Welch struct {
	Diff Null    `json:"diff"`
	CI95 [2]Null `json:"ci95"`
	T    Null    `json:"t"`
	DF   Null    `json:"df"`
	P    Null    `json:"p"`
}

// WelchTest compares the means of b (baseline) and t (treatment). Fields
// are null when either side has fewer than two values or both have no
// variance.
func WelchTest(b, t []float64) Welch {
	w := Welch{Diff: NaN, CI95: [2]Null{NaN, NaN}, T: NaN, DF: NaN, P: NaN}
	if len(b) == 0 || len(t) == 0 {
		return w
	}
	diff := Mean(t) - Mean(b)
	w.Diff = Null(diff)
	if len(b) < 2 || len(t) < 2 {
		return w
	}
	vb, vt := Variance(b)/float64(len(b)), Variance(t)/float64(len(t))
	se := math.Sqrt(vb + vt)
	if se == 0 {
		return w
	}
	df := (vb + vt) * (vb + vt) / (vb*vb/float64(len(b)-1) + vt*vt/float64(len(t)-1))
	dist := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}
	tv := diff / se
	q := dist.Quantile(0.975)
	w.T, w.DF = Null(tv), Null(df)
	w.P = Null(studentP2(tv, df))
	w.CI95 = [2]Null{Null(diff - q*se), Null(diff + q*se)}
	return w
}

// HedgesG is the standardised difference of means with the small-sample
// correction J = 1 − 3/(4(n₁+n₂)−9); null with fewer than two values a side
// or no pooled variance.
func HedgesG(b, t []float64) Null {
	nb, nt := float64(len(b)), float64(len(t))
	if len(b) < 2 || len(t) < 2 {
		return NaN
	}
	pooled := math.Sqrt(((nb-1)*Variance(b) + (nt-1)*Variance(t)) / (nb + nt - 2))
	if pooled == 0 {
		return NaN
	}
	j := 1 - 3/(4*(nb+nt)-9)
	return Null(j * (Mean(t) - Mean(b)) / pooled)
}

// MannWhitney is the Mann–Whitney U test, two-sided, by the normal
// approximation with tie and continuity corrections. U is the treatment's.
type MannWhitney struct {
	U Null `json:"u"`
	P Null `json:"p"`
}

// MannWhitneyTest ranks b and t together (ties get their average rank).
func MannWhitneyTest(b, t []float64) MannWhitney {
	bs, ts := slices.Clone(b), slices.Clone(t)
	slices.Sort(bs)
	slices.Sort(ts)
	return mannWhitneySorted(bs, ts)
}

// mannWhitneySorted is MannWhitneyTest on sorted samples: one merge walks
// the tie groups.
func mannWhitneySorted(b, t []float64) MannWhitney {
	nb, nt := len(b), len(t)
	if nb == 0 || nt == 0 {
		return MannWhitney{NaN, NaN}
	}
	var rankT, tieTerm float64
	i, j, rank := 0, 0, 0 // rank: values ranked so far
	for i < nb || j < nt {
		var v float64
		switch {
		case i == nb:
			v = t[j]
		case j == nt:
			v = b[i]
		default:
			v = min(b[i], t[j])
		}
		cb, ct := 0, 0
		for i < nb && b[i] == v {
			i++
			cb++
		}
		for j < nt && t[j] == v {
			j++
			ct++
		}
		c := cb + ct
		avg := float64(2*rank+c+1) / 2 // ranks rank+1 .. rank+c
		rankT += avg * float64(ct)
		if c > 1 {
			fc := float64(c)
			tieTerm += fc*fc*fc - fc
		}
		rank += c
	}
	fnb, fnt := float64(nb), float64(nt)
	n := fnb + fnt
	u := rankT - fnt*(fnt+1)/2
	mu := fnb * fnt / 2
	sigma := math.Sqrt(fnb * fnt / 12 * ((n + 1) - tieTerm/(n*(n-1))))
	if sigma == 0 || math.IsNaN(sigma) {
		return MannWhitney{U: Null(u), P: NaN}
	}
	big := math.Max(u, fnb*fnt-u)
	z := (big - mu - 0.5) / sigma
	// z is the larger side's, so at least −0.5/σ: its two-sided p is
	// 2·P(Z > z), which is 1 or more when z ≤ 0.
	return MannWhitney{U: Null(u), P: Null(math.Min(1, math.Erfc(z/math.Sqrt2)))}
}

// Proportions compares two success rates: the difference with Newcombe's
// hybrid score interval, and the two-proportion z-test.
type Proportions struct {
	Baseline  Null    `json:"baseline"`
	Treatment Null    `json:"treatment"`
	Diff      Null    `json:"diff"`
	DiffCI95  [2]Null `json:"diff_ci95"`
	Z         Null    `json:"z"`
	P         Null    `json:"p"`
}

// CompareProportions compares kb of nb (baseline) with kt of nt.
func CompareProportions(kb, nb, kt, nt int64) Proportions {
	r := Proportions{Baseline: NaN, Treatment: NaN, Diff: NaN, DiffCI95: [2]Null{NaN, NaN}, Z: NaN, P: NaN}
	if nb > 0 {
		r.Baseline = Null(float64(kb) / float64(nb))
	}
	if nt > 0 {
		r.Treatment = Null(float64(kt) / float64(nt))
	}
	if nb == 0 || nt == 0 {
		return r
	}
	pb, pt := float64(r.Baseline), float64(r.Treatment)
	d := pt - pb
	r.Diff = Null(d)
	wb, wt := Wilson(kb, nb), Wilson(kt, nt)
	lb, ub, lt, ut := float64(wb[0]), float64(wb[1]), float64(wt[0]), float64(wt[1])
	r.DiffCI95 = [2]Null{
		Null(d - math.Sqrt((pt-lt)*(pt-lt)+(ub-pb)*(ub-pb))),
		Null(d + math.Sqrt((ut-pt)*(ut-pt)+(pb-lb)*(pb-lb))),
	}
	pool := float64(kb+kt) / float64(nb+nt)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(nb) + 1/float64(nt)))
	if se > 0 {
		z := d / se
		r.Z, r.P = Null(z), Null(normalP2(z))
	}
	return r
}

// Holm adjusts p-values for multiple comparisons (Holm–Bonferroni); null
// values stay null and do not count.
func Holm(ps []Null) []Null {
	type item struct {
		i int
		p float64
	}
	var items []item
	for i, p := range ps {
		if p.Valid() {
			items = append(items, item{i, float64(p)})
		}
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.p, b.p) })
	out := make([]Null, len(ps))
	for i := range out {
		out[i] = NaN
	}
	m := float64(len(items))
	running := 0.0
	for j, it := range items {
		running = math.Max(running, math.Min(1, (m-float64(j))*it.p))
		out[it.i] = Null(running)
	}
	return out
}

// BootstrapCI is a percentile-bootstrap 95% interval of the difference of a
// percentile (treatment − baseline).
type BootstrapCI struct {
	Diff Null    `json:"diff"`
	CI95 [2]Null `json:"ci95"`
}

// BootstrapPercentileDiffs computes, for each percentile p in ps, the
// difference of the type-7 percentiles and its percentile-bootstrap 95%
// interval from resamples resamples, reproducibly from seed.
//
// Resampling a million values thousands of times is far too slow, and not
// needed: a type-7 percentile of a resample of a sorted sample x depends
// only on the resample's order statistics j and j+1 (j = ⌊p/100·(n−1)⌋+1),
// and the j-th smallest of n values drawn uniformly with replacement from
// x is x at index ⌈n·U⌉, U the j-th order statistic of n uniforms, which is
// Beta(j, n−j+1) distributed; the next one is U + (1−U)(1−V^(1/(n−j))) with
// V uniform. Each resample costs O(1) draws, and the bootstrap distribution
// is the same as resampling's.
func BootstrapPercentileDiffs(b, t []float64, ps []float64, resamples int, seed uint64) []BootstrapCI {
	bs, ts := slices.Clone(b), slices.Clone(t)
	slices.Sort(bs)
	slices.Sort(ts)
	return bootstrapSorted(bs, ts, ps, resamples, seed)
}

// bootstrapSorted is BootstrapPercentileDiffs on sorted samples.
func bootstrapSorted(bs, ts []float64, ps []float64, resamples int, seed uint64) []BootstrapCI {
	out := make([]BootstrapCI, len(ps))
	for i := range out {
		out[i] = BootstrapCI{Diff: NaN, CI95: [2]Null{NaN, NaN}}
	}
	if len(bs) == 0 || len(ts) == 0 {
		return out
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	diffs := make([]float64, max(resamples, 0))
	for i, p := range ps {
		out[i].Diff = Null(Percentile(ts, p) - Percentile(bs, p))
		if resamples <= 0 {
			continue
		}
		for r := range diffs {
			diffs[r] = resamplePercentile(ts, p, rng) - resamplePercentile(bs, p, rng)
		}
		q := Percentiles(diffs, 2.5, 97.5)
		out[i].CI95 = [2]Null{Null(q[0]), Null(q[1])}
	}
	return out
}

// resamplePercentile draws the type-7 percentile p of one bootstrap
// resample of sorted xs.
func resamplePercentile(xs []float64, p float64, rng *rand.Rand) float64 {
	n := len(xs)
	if n == 1 {
		return xs[0]
	}
	h := p / 100 * float64(n-1)
	lo := math.Floor(h)
	j := int(lo) + 1 // 1-based order statistic
	u := distuv.Beta{Alpha: float64(j), Beta: float64(n - j + 1), Src: rng}.Rand()
	v := xs[index(u, n)]
	if j >= n || h == lo {
		return v
	}
	next := u + (1-u)*(1-math.Pow(rng.Float64(), 1/float64(n-j)))
	return v + (h-lo)*(xs[index(next, n)]-v)
}

// index maps a uniform order statistic to the sorted sample's index.
func index(u float64, n int) int {
	i := int(math.Ceil(u*float64(n))) - 1
	return min(max(i, 0), n-1)
}
