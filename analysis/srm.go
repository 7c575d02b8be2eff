package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// SRMThreshold is the p-value below which a sample ratio is a mismatch:
// strict, because a check that runs on every look must rarely cry wolf.
const SRMThreshold = 0.001

// SRM is the sample-ratio check of a comparison (SPEC §14): Pearson's χ²
// of the experiments' event counts against the intended shares.
type SRM struct {
	Counts         []int64   `json:"counts"`
	ExpectedShares []float64 `json:"expected_shares"`
	Chi2           Null      `json:"chi2"`
	DF             int       `json:"df"`
	P              Null      `json:"p"`
	// Mismatch is null when there is nothing to test (no events).
	Mismatch *bool `json:"mismatch"`
}

// SampleRatio tests counts against allocation, weights of any scale (nil:
// equal shares). Every weight must be positive and finite, one per count.
func SampleRatio(counts []int64, allocation []float64) (SRM, error) {
	k := len(counts)
	if allocation == nil {
		allocation = make([]float64, k)
		for i := range allocation {
			allocation[i] = 1
		}
	}
	if len(allocation) != k {
		return SRM{}, fmt.Errorf("allocation has %d shares for %d experiments", len(allocation), k)
	}
	var sum float64
	for _, a := range allocation {
		if !(a > 0) || math.IsInf(a, 0) {
			return SRM{}, fmt.Errorf("allocation share %v: want a positive number", a)
		}
		sum += a
	}
	out := SRM{Counts: counts, ExpectedShares: make([]float64, k), Chi2: NaN, DF: k - 1, P: NaN}
	var total int64
	for i, a := range allocation {
		out.ExpectedShares[i] = a / sum
		total += counts[i]
	}
	if total == 0 || k < 2 {
		return out, nil
	}
	var chi2 float64
	for i, c := range counts {
		e := out.ExpectedShares[i] * float64(total)
		chi2 += (float64(c) - e) * (float64(c) - e) / e
	}
	p := distuv.ChiSquared{K: float64(k - 1)}.Survival(chi2)
	mismatch := p < SRMThreshold
	out.Chi2, out.P, out.Mismatch = Null(chi2), Null(p), &mismatch
	return out, nil
}
