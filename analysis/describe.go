// Package analysis computes exact statistics over every stored event of an
// experiment: descriptive statistics, reliability with confidence intervals,
// cost and token totals, quality scores, and time windows; comparisons of
// experiments, unpaired and paired by sample id; and the regression gate
// over a comparison. It is pure: callers hand it the numbers, it does no
// I/O.
package analysis

import (
	"encoding/json"
	"math"
	"math/bits"

	"gonum.org/v1/gonum/stat/distuv"
)

// Null is a number that encodes as JSON null when it is undefined (NaN).
type Null float64

// NaN is the undefined value.
var NaN = Null(math.NaN())

// MarshalJSON encodes NaN and ±Inf as null.
func (n Null) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// UnmarshalJSON reads null as NaN.
func (n *Null) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NaN
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*n = Null(f)
	return nil
}

// Valid tells whether the number is defined.
func (n Null) Valid() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of sorted xs,
// interpolating linearly at index p/100·(n−1): R's type 7, numpy's default.
// It is NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	h := p / 100 * float64(n-1)
	lo := math.Floor(h)
	i := int(lo)
	if i >= n-1 {
		return sorted[n-1]
	}
	return lerp(sorted[i], sorted[i+1], h-lo)
}

// lerp interpolates between a ≤ b at f in [0, 1). When b−a is beyond
// float64 (a and b of opposite signs), it weighs the two instead, which
// cannot overflow.
func lerp(a, b, f float64) float64 {
	if d := b - a; !math.IsInf(d, 0) {
		return a + f*d
	}
	return a*(1-f) + b*f
}

// Mean is the arithmetic mean, NaN for no values. It sums with Neumaier's
// compensation, so large counts of similar values lose no digits. A sum
// beyond float64 (two latencies of 1e308) is redone on values scaled down
// by a power of two, so finite values always have a finite mean.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	n := float64(len(xs))
	if m := Sum(xs) / n; !math.IsInf(m, 0) && !math.IsNaN(m) {
		return m
	}
	// Scaled by 2^-k with 2^k > n, n values of at most MaxFloat64 sum to
	// less than MaxFloat64; powers of two scale exactly.
	k := bits.Len(uint(len(xs)))
	return math.Ldexp(scaledSum(xs, math.Ldexp(1, -k))/n, k)
}

// Sum adds xs with Neumaier's compensated summation.
func Sum(xs []float64) float64 { return scaledSum(xs, 1) }

// scaledSum adds x·scale over xs with Neumaier's compensation; scale is a
// power of two (1 leaves every value as it is).
func scaledSum(xs []float64, scale float64) float64 {
	var s, c float64
	for _, x := range xs {
		x *= scale
		t := s + x
		if math.Abs(s) >= math.Abs(x) {
			c += (s - t) + x
		} else {
			c += (x - t) + s
		}
		s = t
	}
	return s + c
}

// StdDev is the sample standard deviation (n−1): 0 for one value, NaN for
// none. Two passes, about the mean; finite whenever the standard deviation
// itself is, though the variance may be beyond float64.
func StdDev(xs []float64) float64 {
	switch len(xs) {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	v, k := scaledVariance(xs)
	return math.Ldexp(math.Sqrt(v), k)
}

// Variance is the sample variance (n−1), NaN for fewer than two values.
// Squared deviations are summed with Neumaier's compensation.
func Variance(xs []float64) float64 {
	if len(xs) < 2 {
		return math.NaN()
	}
	v, k := scaledVariance(xs)
	return math.Ldexp(v, 2*k)
}

// scaledVariance returns v and k with the sample variance = v·4^k. k is 0
// unless the squared deviations overflow; then they are summed on values
// scaled by 2^-k so that every deviation is below 1 in magnitude.
func scaledVariance(xs []float64) (float64, int) {
	m := Mean(xs)
	if v := sumSquares(xs, m, 1) / float64(len(xs)-1); !math.IsInf(v, 0) && !math.IsNaN(v) {
		return v, 0
	}
	if math.IsNaN(m) || math.IsInf(m, 0) {
		return math.NaN(), 0
	}
	var spread float64
	for _, x := range xs {
		spread = max(spread, math.Abs(x), math.Abs(m))
	}
	// |x − m| ≤ 2·spread < 2^(e+1): scaled by 2^-(e+1), below 1.
	_, e := math.Frexp(spread)
	k := e + 1
	return sumSquares(xs, m, math.Ldexp(1, -k)) / float64(len(xs)-1), k
}

// sumSquares adds (x·scale − m·scale)² over xs with Neumaier's
// compensation; scale is a power of two (1: the plain deviations).
func sumSquares(xs []float64, m, scale float64) float64 {
	var s, c float64
	ms := m * scale
	for _, x := range xs {
		d := x*scale - ms
		v := d * d
		t := s + v
		if s >= v {
			c += (s - t) + v
		} else {
			c += (v - t) + s
		}
		s = t
	}
	return s + c
}

// Description summarises a sample (SPEC §7 latency).
type Description struct {
	Count  int  `json:"count"`
	Mean   Null `json:"mean"`
	Median Null `json:"median"`
	StdDev Null `json:"std_dev"`
	Min    Null `json:"min"`
	Max    Null `json:"max"`
	P50    Null `json:"p50"`
	P90    Null `json:"p90"`
	P95    Null `json:"p95"`
	P99    Null `json:"p99"`
	// MeanSEClustered and MeanCI95Clustered are the mean's clustered
	// standard error and interval (SPEC §14), only with clusters.
	MeanSEClustered   *Null    `json:"mean_se_clustered,omitempty"`
	MeanCI95Clustered *[2]Null `json:"mean_ci95_clustered,omitempty"`
}

// Describe describes xs, reordering it; every field is null for an empty
// sample.
func Describe(xs []float64) Description {
	if len(xs) == 0 {
		return Description{Mean: NaN, Median: NaN, StdDev: NaN, Min: NaN, Max: NaN, P50: NaN, P90: NaN, P95: NaN, P99: NaN}
	}
	mean, sd := Mean(xs), StdDev(xs)
	lo, hi := minOf(xs), maxOf(xs)
	q := Percentiles(xs, 50, 90, 95, 99)
	return Description{
		Count: len(xs), Mean: Null(mean), Median: Null(q[0]), StdDev: Null(sd), Min: Null(lo), Max: Null(hi),
		P50: Null(q[0]), P90: Null(q[1]), P95: Null(q[2]), P99: Null(q[3]),
	}
}

// z975 is the standard normal's 97.5th percentile, for 95% intervals.
var z975 = distuv.UnitNormal.Quantile(0.975)

// Wilson is the Wilson score interval of successes out of n at 95%;
// [NaN, NaN] for n = 0.
func Wilson(successes, n int64) [2]Null {
	if n == 0 {
		return [2]Null{NaN, NaN}
	}
	z := z975
	nf := float64(n)
	p := float64(successes) / nf
	den := 1 + z*z/nf
	center := (p + z*z/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf))
	return [2]Null{Null(max(0, center-half)), Null(min(1, center+half))}
}
