package analysis

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestSequentialTuningsAgreeWithNumpy: the confidence sequence at several
// N*, against §14's formula written out in numpy.
func TestSequentialTuningsAgreeWithNumpy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	latencies := func(pts []Point) []float64 { return sampleOf(pts).latency }
	b, tr := latencies(data["control"]), latencies(data["treatment_a"])
	for name, want := range exp["_sequential_tunings"] {
		t.Run(name, func(t *testing.T) {
			tuning, err := strconv.ParseFloat(name, 64)
			if err != nil {
				t.Fatal(err)
			}
			got := toGeneric(t, SequentialDiff(b, tr, tuning))
			for _, d := range agree("sequential_"+name, got, want) {
				t.Error(d)
			}
		})
	}
}

// TestSequentialWiderAndShrinking: at every n the sequence is wider than
// Welch's fixed-n interval (the price of looking as often as one likes),
// and it narrows as the experiment grows.
func TestSequentialWiderAndShrinking(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var b, tr []float64
	prev := math.Inf(1)
	for _, n := range []int{50, 200, 1000, 5000, 20000} {
		for len(b) < n {
			b = append(b, 500+100*rng.NormFloat64())
			tr = append(tr, 490+100*rng.NormFloat64())
		}
		seq, w := SequentialDiff(b, tr, 0), WelchTest(b, tr)
		sw := float64(seq.CS95[1] - seq.CS95[0])
		cw := float64(w.CI95[1] - w.CI95[0])
		t.Logf("n=%d per arm: sequential width %.3f, classical %.3f (ratio %.2f), p %.3g vs %.3g", n, sw, cw, sw/cw, seq.P, w.P)
		if !(sw > cw) {
			t.Errorf("n=%d: sequential width %v not wider than classical %v", n, sw, cw)
		}
		if !(sw < prev) {
			t.Errorf("n=%d: sequential width %v did not shrink from %v", n, sw, prev)
		}
		if seq.CS95[0] > w.CI95[0] || seq.CS95[1] < w.CI95[1] {
			t.Errorf("n=%d: sequential %v does not contain classical %v", n, seq.CS95, w.CI95)
		}
		if !(seq.P >= w.P) {
			t.Errorf("n=%d: anytime-valid p %v below the fixed-n p %v", n, seq.P, w.P)
		}
		prev = sw
	}
}

// TestSequentialUndefined: too few values or no variance give nulls.
func TestSequentialUndefined(t *testing.T) {
	for name, c := range map[string][2][]float64{
		"one a side":  {{1}, {2, 3}},
		"empty":       {nil, {1, 2}},
		"no variance": {{5, 5, 5}, {5, 5}},
	} {
		t.Run(name, func(t *testing.T) {
			s := SequentialDiff(c[0], c[1], 0)
			if s.CS95[0].Valid() || s.CS95[1].Valid() || s.P.Valid() {
				t.Errorf("got %+v", s)
			}
		})
	}
	// A success rate of 1 on both sides has no variance either.
	c := Compare([]Point{{Success: 1}, {Success: 1}}, [][]Point{{{Success: 1}, {Success: 1}}}, CompareOptions{})
	if s := c[0].SuccessRate.Sequential; s.P.Valid() {
		t.Errorf("success sequential %+v", s)
	}
}
