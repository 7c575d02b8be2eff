package ui

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func seq(vs []float64) func(func(float64) bool) {
	return slices.Values(vs)
}

// checkHistogram: the bins are contiguous, of the declared width, cover
// every value, and hold each in [lower, upper) (the last one closed).
func checkHistogram(t *testing.T, h Histogram, vs []float64) {
	t.Helper()
	var n int64
	for _, v := range vs {
		if !math.IsNaN(v) {
			n++
		}
	}
	if h.Count != n {
		t.Fatalf("count %d, want %d", h.Count, n)
	}
	if n == 0 {
		if len(h.Bins) != 0 || h.Min != nil || h.Max != nil || h.Width != nil {
			t.Fatalf("no values: %+v", h)
		}
		return
	}
	var sum int64
	for i, b := range h.Bins {
		sum += b.Count
		if math.Abs((b.Upper-b.Lower)-*h.Width) > 1e-9**h.Width {
			t.Errorf("bin %d: [%v, %v) is not %v wide", i, b.Lower, b.Upper, *h.Width)
		}
		if i > 0 && b.Lower != h.Bins[i-1].Upper {
			t.Errorf("bin %d starts at %v, the last ended at %v", i, b.Lower, h.Bins[i-1].Upper)
		}
	}
	if sum != n {
		t.Errorf("bins hold %d values, want %d", sum, n)
	}
	if first, last := h.Bins[0], h.Bins[len(h.Bins)-1]; first.Lower > *h.Min || last.Upper < *h.Max {
		t.Errorf("bins [%v, %v] do not cover [%v, %v]", first.Lower, last.Upper, *h.Min, *h.Max)
	}
	want := make([]int64, len(h.Bins))
	for _, v := range vs {
		if math.IsNaN(v) {
			continue
		}
		i, ok := slices.BinarySearchFunc(h.Bins, v, func(b Bin, v float64) int {
			switch {
			case v < b.Lower:
				return 1
			case v >= b.Upper:
				return -1
			}
			return 0
		})
		if !ok {
			i = len(h.Bins) - 1 // the maximum, on the last bin's upper edge
		}
		want[i]++
	}
	for i := range want {
		if want[i] != h.Bins[i].Count {
			t.Errorf("bin %d [%v, %v): %d values, want %d", i, h.Bins[i].Lower, h.Bins[i].Upper, h.Bins[i].Count, want[i])
		}
	}
}

func TestLatencyHistogramBins(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lognormal := make([]float64, 5000)
	for i := range lognormal {
		lognormal[i] = math.Round(900*math.Exp(0.45*r.NormFloat64())*100) / 100
	}
	cases := map[string][]float64{
		"none":            nil,
		"only NaN":        {math.NaN(), math.NaN()},
		"one":             {150},
		"equal":           {7, 7, 7},
		"zero":            {0, 0},
		"on edges":        {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100},
		"max on an edge":  {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 40},
		"NaN among":       {1, math.NaN(), 3},
		"tiny spread":     {1e-9, 2e-9, 3e-9},
		"huge":            {1e300, 1.7e308},
		"log-normal":      lognormal,
		"fractional grid": {0.1, 0.2, 0.3, 0.7, 0.9, 1.1},
	}
	for name, vs := range cases {
		t.Run(name, func(t *testing.T) {
			h := latencyHistogram(seq(vs), histogramBins)
			checkHistogram(t, h, vs)
			if len(h.Bins) > histogramBins+2 {
				t.Errorf("%d bins for a target of %d", len(h.Bins), histogramBins)
			}
		})
	}
}

func TestNiceWidth(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0, 1}, {-1, 1}, {math.NaN(), 1}, {math.Inf(1), 1},
		{0.3, 0.5}, {1, 1}, {1.01, 2}, {2.5, 5}, {63.4, 100}, {120, 200}, {5e-7, 5e-7},
	} {
		if got := niceWidth(c.in); math.Abs(got-c.want) > 1e-12*c.want {
			t.Errorf("niceWidth(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}
