package analysis

import (
	"fmt"
	"math"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
)

// Power plans a two-arm experiment from one experiment's own values as the
// baseline (SPEC §14): the events per arm that detect a difference of MDE
// with the power asked at level alpha, and the difference detectable with
// as many events per arm as this experiment has.
type Power struct {
	Metric   string  `json:"metric"`
	N        int     `json:"n"`
	Mean     Null    `json:"mean"`
	Variance Null    `json:"variance"`
	MDE      float64 `json:"mde"`
	Alpha    float64 `json:"alpha"`
	Power    float64 `json:"power"`
	// NPerArm is null when the variance is unknown (n < 2) or 0: a
	// constant baseline does not say how noisy the next events are.
	NPerArm *int64 `json:"n_per_arm"`
	MDEAtN  Null   `json:"mde_at_n"`
}

// PowerOf is the plan for values (latency ms, cost USD, 0/1 success, a
// score):
// n_per_arm = ⌈2(z_{1−α/2} + z_power)²·σ²/D²⌉, mde_at_n =
// (z_{1−α/2} + z_power)·√(2σ²/n), σ² the sample variance of values.
func PowerOf(metric string, values []float64, mde, alpha, power float64) (Power, error) {
	if !(mde > 0) || math.IsInf(mde, 0) {
		return Power{}, fmt.Errorf("mde must be a positive number, not %v", mde)
	}
	if !(alpha > 0 && alpha < 1) {
		return Power{}, fmt.Errorf("alpha must be between 0 and 1, not %v", alpha)
	}
	if !(power > 0 && power < 1) {
		return Power{}, fmt.Errorf("power must be between 0 and 1, not %v", power)
	}
	out := Power{Metric: metric, N: len(values), Mean: meanOrNull(values), Variance: NaN, MDE: mde, Alpha: alpha, Power: power, MDEAtN: NaN}
	if len(values) < 2 {
		return out, nil
	}
	v := Variance(values)
	out.Variance = Null(v)
	if !(v > 0) || math.IsInf(v, 0) {
		return out, nil
	}
	z := distuv.UnitNormal.Quantile(1-alpha/2) + distuv.UnitNormal.Quantile(power)
	n := math.Ceil(2 * z * z * v / (mde * mde))
	if n < math.MaxInt64 {
		ni := int64(n)
		out.NPerArm = &ni
	}
	out.MDEAtN = Null(z * math.Sqrt(2*v/float64(len(values))))
	return out, nil
}

// PowerMetrics names the metrics a plan is made for, for messages.
const PowerMetrics = "latency, cost, success or score:<name>"

// MetricValues are the per-event values of metric that the plan is made
// from: latency, cost, success (0/1 over judged events) or score:<name>
// (the events that have that score).
func MetricValues(pts []Point, metric string) ([]float64, error) {
	out := []float64{}
	switch {
	case metric == "latency":
		for _, p := range pts {
			if !math.IsNaN(p.LatencyMs) {
				out = append(out, p.LatencyMs)
			}
		}
	case metric == "cost":
		for _, p := range pts {
			if !math.IsNaN(p.CostUSD) {
				out = append(out, p.CostUSD)
			}
		}
	case metric == "success":
		for _, p := range pts {
			if p.Success >= 0 {
				out = append(out, float64(p.Success))
			}
		}
	case strings.HasPrefix(metric, "score:") && len(metric) > len("score:"):
		name := metric[len("score:"):]
		for _, p := range pts {
			if v, ok := scoreOf(p.Scores, name); ok {
				out = append(out, v)
			}
		}
	default:
		return nil, fmt.Errorf("unknown metric %q: want %s", metric, PowerMetrics)
	}
	return out, nil
}
