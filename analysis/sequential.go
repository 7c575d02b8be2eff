package analysis

import "math"

// DefaultSequentialTuning is N*, the total sample size at which the
// confidence sequence is tightest (SPEC §14), when none is asked for.
const DefaultSequentialTuning = 5000

// sequentialAlpha is the confidence sequence's level: cs95 is a 95% sequence.
const sequentialAlpha = 0.05

// Sequential is an asymptotic confidence sequence for a difference of
// means, valid however often it is looked at (SPEC §14), and the
// anytime-valid p-value that goes with it.
type Sequential struct {
	CS95 [2]Null `json:"cs95"`
	P    Null    `json:"p"`
}

// SequentialDiff is the confidence sequence of mean(t) − mean(b) with
// tuning N* (≤ 0: DefaultSequentialTuning). Null with fewer than two values
// a side or no variance on either.
func SequentialDiff(b, t []float64, tuning float64) Sequential {
	if len(b) < 2 || len(t) < 2 {
		return Sequential{CS95: [2]Null{NaN, NaN}, P: NaN}
	}
	return sequentialFrom(len(b), len(t), Variance(b), Variance(t), Mean(t)-Mean(b), tuning)
}

// sequentialFrom is SequentialDiff from the two sides' sizes, sample
// variances and the difference d, as SPEC §14 writes it: with N = n_B + n_T,
// V = N·(s²_B/n_B + s²_T/n_T) and ρ² = (−2 ln α + ln(−2 ln α + 1))/N*,
// d ± √V·√(2(Nρ²+1)/(N²ρ²)·ln(√(Nρ²+1)/α)).
func sequentialFrom(nb, nt int, vb, vt, d, tuning float64) Sequential {
	out := Sequential{CS95: [2]Null{NaN, NaN}, P: NaN}
	if nb < 2 || nt < 2 || math.IsNaN(d) {
		return out
	}
	if tuning <= 0 {
		tuning = DefaultSequentialTuning
	}
	fb, ft := float64(nb), float64(nt)
	n := fb + ft
	v := n * (vb/fb + vt/ft)
	if !(v > 0) || math.IsInf(v, 0) {
		return out
	}
	la := -2 * math.Log(sequentialAlpha)
	rho2 := (la + math.Log(la+1)) / tuning
	nr := n*rho2 + 1
	half := math.Sqrt(v) * math.Sqrt(2*nr/(n*n*rho2)*math.Log(math.Sqrt(nr)/sequentialAlpha))
	out.CS95 = [2]Null{Null(d - half), Null(d + half)}
	out.P = Null(math.Min(1, math.Sqrt(nr)*math.Exp(-d*d*n*n*rho2/(2*v*nr))))
	return out
}

// successVariance is the sample variance of k ones and n − k zeros: the
// per-event variance of a success rate.
func successVariance(k, n int64) float64 {
	if n < 2 {
		return math.NaN()
	}
	p := float64(k) / float64(n)
	return float64(n) / float64(n-1) * p * (1 - p)
}
