// Package analysis computes exact statistics over every stored event of an
// experiment: descriptive statistics, reliability with confidence intervals,
// cost and token totals, and time windows. It is pure: callers hand it the
// numbers, it does no I/O.
package analysis

import (
	"encoding/json"
	"math"

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
	return sorted[i] + (h-lo)*(sorted[i+1]-sorted[i])
}

// Mean is the arithmetic mean, NaN for no values. It sums with Neumaier's
// compensation, so large counts of similar values lose no digits.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return Sum(xs) / float64(len(xs))
}

// Sum adds xs with Neumaier's compensated summation.
func Sum(xs []float64) float64 {
	var s, c float64
	for _, x := range xs {
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
// none. Two passes, about the mean.
func StdDev(xs []float64) float64 {
	switch len(xs) {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	return math.Sqrt(Variance(xs))
}

// Variance is the sample variance (n−1), NaN for fewer than two values.
// Squared deviations are summed with Neumaier's compensation.
func Variance(xs []float64) float64 {
	if len(xs) < 2 {
		return math.NaN()
	}
	m := Mean(xs)
	var s, c float64
	for _, x := range xs {
		d := x - m
		v := d * d
		t := s + v
		if s >= v {
			c += (s - t) + v
		} else {
			c += (v - t) + s
		}
		s = t
	}
	return (s + c) / float64(len(xs)-1)
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
