package collector

import "math"

// Welford keeps count, mean, sum of squared deviations, min and max of a
// stream in O(1) memory (Welford's online algorithm). The standard
// deviation is the sample one (n−1), as the exact analysis computes it.
// Finite values give a finite mean, and a finite standard deviation
// whenever it is one, though squared deviations may be beyond float64.
type Welford struct {
	N        int64
	Mean     float64
	Min, Max float64
	m2       float64 // the sum of squared deviations is m2·4^k
	k        int     // 0 until the squared deviations overflow
}

// Add takes one value.
func (w *Welford) Add(x float64) {
	w.N++
	if w.N == 1 {
		w.Mean, w.m2, w.k, w.Min, w.Max = x, 0, 0, x, x
		return
	}
	n := float64(w.N)
	prev := w.Mean
	d := x - prev
	if math.IsInf(d, 0) && !math.IsInf(x, 0) {
		w.Mean += (x/2 - prev/2) / n * 2 // d is beyond float64, half of it is not
	} else {
		w.Mean += d / n
	}
	var t float64
	if w.k == 0 {
		t = d * (x - w.Mean)
	} else {
		t = w.term(x, prev)
	}
	// Rescale by 2^-64 at a time (at most 17 times: by then every scaled
	// deviation is below 2) until the sum fits; a NaN or an infinity in
	// the input stays undefined.
	for m2 := w.m2 + t; math.IsInf(m2, 0) || math.IsNaN(m2); m2 = w.m2 + t {
		if w.k > 1100 || math.IsNaN(x) || math.IsInf(x, 0) {
			w.m2 = math.NaN()
			break
		}
		w.k += 64
		w.m2 = math.Ldexp(w.m2, -128)
		t = w.term(x, prev)
	}
	w.m2 += t
	w.Min = min(w.Min, x)
	w.Max = max(w.Max, x)
}

// term is x's squared-deviation increment scaled by 4^-k.
func (w *Welford) term(x, prev float64) float64 {
	s := math.Ldexp(1, -w.k)
	return (x*s - prev*s) * (x*s - w.Mean*s)
}

// StdDev is the sample standard deviation: 0 for one value, NaN for none.
func (w *Welford) StdDev() float64 {
	switch w.N {
	case 0:
		return math.NaN()
	case 1:
		return 0
	}
	return math.Ldexp(math.Sqrt(w.m2/float64(w.N-1)), w.k)
}
