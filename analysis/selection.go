package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Percentiles returns the type-7 percentiles ps (ascending, 0..100) of xs
// without sorting it all: each needs only the order statistics at
// ⌊p/100·(n−1)⌋ and the next one, found by selection from the highest
// percentile down, each search inside the part left of the previous one.
// xs is reordered. NaN for no values.
func Percentiles(xs []float64, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	n := len(xs)
	if n == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	if n <= 64 {
		slices.Sort(xs)
		for i, p := range ps {
			out[i] = Percentile(xs, p)
		}
		return out
	}
	hi := n // xs[:hi] holds the candidates; everything right of it is larger
	for i := len(ps) - 1; i >= 0; i-- {
		h := ps[i] / 100 * float64(n-1)
		lo := math.Floor(h)
		k := int(lo)
		if k >= n-1 {
			out[i] = maxOf(xs[:hi])
			continue
		}
		vk := selectK(xs[:hi], k)
		// The next order statistic is the smallest value right of k.
		next := minOf(xs[k+1:])
		out[i] = lerp(vk, next, h-lo)
		hi = k + 1
	}
	return out
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

// selectK reorders xs so that xs[k] is the value a sort would put there,
// with nothing larger before it and nothing smaller after it (quickselect
// with random pivots and three-way partitioning, so ties cost nothing).
func selectK(xs []float64, k int) float64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		pivot := xs[lo+rand.IntN(hi-lo+1)]
		// Dutch flag: [lo,lt) < pivot, [lt,i) == pivot, (gt,hi] > pivot.
		lt, i, gt := lo, lo, hi
		for i <= gt {
			switch x := xs[i]; {
			case x < pivot:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case x > pivot:
				xs[i], xs[gt] = xs[gt], xs[i]
				gt--
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt - 1
		case k > gt:
			lo = gt + 1
		default:
			return pivot
		}
	}
	return xs[k]
}
