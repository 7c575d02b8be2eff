package analysis

import (
	"strings"
	"testing"
)

// TestSampleRatioAgreesWithScipy against scipy.stats.chisquare.
func TestSampleRatioAgreesWithScipy(t *testing.T) {
	exp := loadExpected(t)
	for name, c := range exp["_srm"] {
		t.Run(name, func(t *testing.T) {
			cm := c.(map[string]any)
			var counts []int64
			for _, x := range cm["counts"].([]any) {
				counts = append(counts, int64(x.(float64)))
			}
			var alloc []float64
			for _, x := range cm["allocation"].([]any) {
				alloc = append(alloc, x.(float64))
			}
			got, err := SampleRatio(counts, alloc)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range agree("srm_"+name, toGeneric(t, got), cm["expected"]) {
				t.Error(d)
			}
		})
	}
}

func TestSampleRatioEdges(t *testing.T) {
	s, err := SampleRatio([]int64{10, 30}, nil)
	if err != nil || s.ExpectedShares[0] != 0.5 || s.DF != 1 || !s.P.Valid() {
		t.Fatalf("equal by default: %+v %v", s, err)
	}
	s, err = SampleRatio([]int64{0, 0}, nil)
	if err != nil || s.Chi2.Valid() || s.P.Valid() || s.Mismatch != nil {
		t.Fatalf("no events: %+v %v", s, err)
	}
	for name, alloc := range map[string][]float64{"too few": {1}, "zero": {1, 0}, "negative": {1, -1}} {
		if _, err := SampleRatio([]int64{1, 2}, alloc); err == nil {
			t.Errorf("%s: allocation %v accepted", name, alloc)
		}
	}
}

// TestPowerAgreesWithScipy against the formulas with scipy.stats.norm.ppf.
func TestPowerAgreesWithScipy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	for name, c := range exp["_power"] {
		t.Run(name, func(t *testing.T) {
			cm := c.(map[string]any)
			values, err := MetricValues(data[cm["dataset"].(string)], cm["metric"].(string))
			if err != nil {
				t.Fatal(err)
			}
			got, err := PowerOf(cm["metric"].(string), values, cm["mde"].(float64), cm["alpha"].(float64), cm["power"].(float64))
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range agree("power_"+name, toGeneric(t, got), cm["expected"]) {
				t.Error(d)
			}
		})
	}
}

func TestPowerRefusesBadInput(t *testing.T) {
	for _, c := range [][3]float64{{0, 0.05, 0.8}, {-1, 0.05, 0.8}, {1, 0, 0.8}, {1, 1, 0.8}, {1, 0.05, 1}, {1, 0.05, 0}} {
		if _, err := PowerOf("latency", []float64{1, 2}, c[0], c[1], c[2]); err == nil {
			t.Errorf("mde %v alpha %v power %v accepted", c[0], c[1], c[2])
		}
	}
	for _, m := range []string{"latancy", "score:", "scores:x"} {
		if _, err := MetricValues(nil, m); err == nil || !strings.Contains(err.Error(), "score:<name>") {
			t.Errorf("%q: %v", m, err)
		}
	}
	if v, err := MetricValues(nil, "score:accuracy"); err != nil || v == nil || len(v) != 0 {
		t.Errorf("a score no event has: %v %v", v, err)
	}
	pts := []Point{{Scores: []Score{{"a", 1}, {"b", 0.5}}}, {}, {Scores: []Score{{"b", 0.25}}}}
	if v, _ := MetricValues(pts, "score:b"); len(v) != 2 || v[0] != 0.5 || v[1] != 0.25 {
		t.Errorf("score:b: %v", v)
	}
	p, err := PowerOf("latency", []float64{3}, 1, 0.05, 0.8)
	if err != nil || p.NPerArm != nil || p.Variance.Valid() || p.MDEAtN.Valid() || p.Mean != 3 {
		t.Errorf("n=1: %+v %v", p, err)
	}
}
