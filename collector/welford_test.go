package collector

import (
	"math"
	"testing"
)

func TestWelfordMatchesTwoPass(t *testing.T) {
	cases := []struct {
		name string
		xs   []float64
	}{
		{"one value", []float64{5}},
		{"two values", []float64{1, 2}},
		{"large offset", []float64{1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4}}, // naive sums lose digits
		{"mixed magnitudes", []float64{0.001, 0.002, 0.003, 100, 1e-9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			xs := c.xs
			var w Welford
			for _, x := range xs {
				w.Add(x)
			}
			mean := 0.0
			for _, x := range xs {
				mean += x
			}
			mean /= float64(len(xs))
			ss := 0.0
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, x := range xs {
				ss += (x - mean) * (x - mean)
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
			sd := 0.0
			if len(xs) > 1 {
				sd = math.Sqrt(ss / float64(len(xs)-1))
			}
			if rel(w.Mean, mean) > 1e-12 || rel(w.StdDev(), sd) > 1e-9 || w.Min != lo || w.Max != hi {
				t.Errorf("%v: got mean %v sd %v min %v max %v, want %v %v %v %v", xs, w.Mean, w.StdDev(), w.Min, w.Max, mean, sd, lo, hi)
			}
		})
	}
	var empty Welford
	if !math.IsNaN(empty.StdDev()) {
		t.Error("no values: std dev must be undefined")
	}
}

func rel(a, b float64) float64 {
	if a == b {
		return 0
	}
	return math.Abs(a-b) / math.Max(math.Abs(a), math.Abs(b))
}

// TestWelfordHugeFiniteValues: finite values whose deviations square
// beyond float64 still give a finite mean and standard deviation; only a
// standard deviation that is itself beyond float64 is undefined.
func TestWelfordHugeFiniteValues(t *testing.T) {
	const big = math.MaxFloat64
	cases := []struct {
		name     string
		xs       []float64
		mean, sd float64
	}{
		{"two 1e308", []float64{1e308, 1e308}, 1e308, 0},
		{"three max", []float64{big, big, big}, big, 0},
		{"zero and 1e308", []float64{0, 1e308}, 5e307, 1e308 / math.Sqrt2},
		{"1e308 and zero", []float64{1e308, 0}, 5e307, 1e308 / math.Sqrt2},
		{"opposite signs", []float64{-1e308, 1e308}, 0, 1e308 * math.Sqrt2},
		{"skewed", []float64{1e308, 1e308, 1.5e308}, 3.5e308 / 3, 1e308 / math.Sqrt(12)},
		{"small after huge", []float64{1e308, 0, 0, 0}, 2.5e307, 5e307},
		{"std dev beyond float64", []float64{-big, big}, 0, math.Inf(1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w Welford
			for _, x := range c.xs {
				w.Add(x)
			}
			sd := w.StdDev()
			okSD := rel(sd, c.sd) <= 1e-12
			if math.IsInf(c.sd, 0) {
				okSD = math.IsInf(sd, 0) || math.IsNaN(sd)
			}
			if rel(w.Mean, c.mean) > 1e-12 || !okSD {
				t.Errorf("mean %v sd %v, want %v %v", w.Mean, sd, c.mean, c.sd)
			}
		})
	}
}
