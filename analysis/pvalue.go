package analysis

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Two-sided p-values that stay accurate in the far tail. gonum's normal
// survival is 0.5·(1 − erf(z/√2)), which cancels to 0 past z ≈ 8.3 (a p of
// 1e-16); erfc keeps its relative precision down to about 1e-308.

// normalP2 is the two-sided p-value of a standard normal statistic z.
func normalP2(z float64) float64 {
	if math.IsNaN(z) {
		return math.NaN()
	}
	return math.Min(1, math.Erfc(math.Abs(z)/math.Sqrt2))
}

// studentP2 is the two-sided p-value of a t statistic with df degrees of
// freedom. gonum's Student's t survival is the regularised incomplete beta
// I_{df/(df+t²)}(df/2, ½)/2 computed directly, not 1 − CDF, so its tail
// keeps relative precision too.
func studentP2(t, df float64) float64 {
	if math.IsNaN(t) || math.IsNaN(df) {
		return math.NaN()
	}
	return math.Min(1, 2*distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.Survival(math.Abs(t)))
}
