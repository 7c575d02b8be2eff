package analysis

import (
	"encoding/json"
	"math"
	"slices"
	"testing"
)

// interleave reorders points so that no two events of a sample are
// adjacent while each sample's events keep their order: the k-th events
// of every sample first, then the (k+1)-th.
func interleave(pts []Point) []Point {
	out := slices.Clone(pts)
	occurrence := map[string]int{}
	nth := make(map[*Point]int, len(out))
	for i := range out {
		nth[&out[i]] = occurrence[out[i].Sample]
		occurrence[out[i].Sample]++
	}
	keyed := make([]struct {
		k int
		p Point
	}, len(out))
	for i := range out {
		keyed[i].k, keyed[i].p = nth[&out[i]], out[i]
	}
	slices.SortStableFunc(keyed, func(a, b struct {
		k int
		p Point
	}) int {
		return a.k - b.k
	})
	for i := range keyed {
		out[i] = keyed[i].p
	}
	return out
}

// TestPairedIgnoresEventOrder: where a sample's events lie in the arm does
// not matter, only which they are.
func TestPairedIgnoresEventOrder(t *testing.T) {
	data := loadDatasets(t)
	b, tr := data["eval_base"], data["eval_treat_a"]
	want, _ := json.Marshal(Compare(b, [][]Point{tr}, CompareOptions{})[0].Paired)
	got, _ := json.Marshal(Compare(interleave(b), [][]Point{interleave(tr)}, CompareOptions{})[0].Paired)
	if string(got) != string(want) {
		t.Errorf("interleaved:\n%s\nin order:\n%s", got, want)
	}
}

// TestPairedHugeValues: repetitions whose sum is beyond float64 still have
// their mean.
func TestPairedHugeValues(t *testing.T) {
	const big = math.MaxFloat64
	var b, tr []Point
	for i, s := range []string{"a", "b", "c"} {
		for range 3 {
			b = append(b, Point{Sample: s, LatencyMs: big, CostUSD: 1, Success: 1, Scores: []Score{{"q", -big}}})
		}
		tr = append(tr, Point{Sample: s, LatencyMs: big / float64(2+i), CostUSD: 1, Success: 1, Scores: []Score{{"q", -big / 2}}})
	}
	p := Compare(b, [][]Point{tr}, CompareOptions{})[0].Paired
	if p.NPairs != 3 || p.Latency.N != 3 || p.Latency.BaselineMean != big || p.Latency.Improved != 3 || !p.Latency.DiffMean.Valid() {
		t.Errorf("latency %+v", p.Latency)
	}
	if q := p.Scores["q"]; q.BaselineMean != -big || q.Improved != 3 || q.DiffMean != big/2 {
		t.Errorf("score %+v", q)
	}
}

// TestPairedWithoutSamples: without sample ids the paired comparison is
// complete and empty, and nothing fails.
func TestPairedWithoutSamples(t *testing.T) {
	for name, c := range map[string][2][]Point{
		"no events":       {nil, nil},
		"no sample ids":   {{{LatencyMs: 1, Success: 1}}, {{LatencyMs: 2, Success: 0}}},
		"treatment only":  {{{LatencyMs: 1}}, {{Sample: "x", LatencyMs: 2}, {Sample: "y", LatencyMs: 3}, {Sample: "x", LatencyMs: 4}}},
		"disjoint":        {{{Sample: "x", LatencyMs: 1}}, {{Sample: "y", LatencyMs: 2}}},
		"metric one side": {{{Sample: "x", LatencyMs: 1, CostUSD: math.NaN()}}, {{Sample: "x", LatencyMs: math.NaN(), CostUSD: 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			p := Compare(c[0], [][]Point{c[1]}, CompareOptions{})[0].Paired
			if p.Key != "sample_id" || p.Scores == nil || p.Latency.N != 0 || p.Latency.P.Valid() || p.Success.McNemar.P.Valid() {
				t.Errorf("%+v", p)
			}
			if _, err := json.Marshal(p); err != nil {
				t.Error(err)
			}
		})
	}
	p := Compare([]Point{{Sample: "x", LatencyMs: 1}}, [][]Point{{{Sample: "x", LatencyMs: math.NaN()}, {Sample: "y"}, {Sample: "y"}}}, CompareOptions{})[0].Paired
	if p.NPairs != 1 || p.BaselineOnly != 0 || p.TreatmentOnly != 1 || p.Latency.N != 0 {
		t.Errorf("a pair without latency: %+v", p)
	}
}

func TestMcNemarTest(t *testing.T) {
	for _, c := range []struct {
		b, c int
		p    float64
	}{
		{0, 0, math.NaN()},
		{3, 3, 1},
		{0, 1, 1},
		{0, 6, 2 * math.Pow(2, -6)},
		{1, 9, 2 * 11 * math.Pow(2, -10)},
		{0, 200, 2 * math.Pow(2, -200)}, // far below what 1 − CDF could show
	} {
		m := McNemarTest(c.b, c.c)
		if math.IsNaN(c.p) && !m.P.Valid() {
			continue
		}
		if math.Abs(float64(m.P)-c.p) > 1e-12*c.p {
			t.Errorf("b=%d c=%d: p %v, want %v", c.b, c.c, m.P, c.p)
		}
	}
}
