package collector

import "math"

// Welford keeps count, mean, sum of squared deviations, min and max of a
// stream in O(1) memory (Welford's online algorithm). The standard
// deviation is the sample one (n−1), as the exact analysis computes it.
type Welford struct {
	N        int64
	Mean, M2 float64
	Min, Max float64
}

// Add takes one value.
func (w *Welford) Add(x float64) {
	w.N++
	if w.N == 1 {
		w.Mean, w.M2, w.Min, w.Max = x, 0, x, x
		return
	}
	d := x - w.Mean
	w.Mean += d / float64(w.N)
	w.M2 += d * (x - w.Mean)
	w.Min = min(w.Min, x)
	w.Max = max(w.Max, x)
}

// StdDev is the sample standard deviation: 0 for one value, NaN for none.
func (w *Welford) StdDev() float64 {
	switch w.N {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	return math.Sqrt(w.M2 / float64(w.N-1))
}
