package analysis

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// clusteredBy returns copies of pts whose clusters are what key names in
// testdata/expected.json: "cluster", each point's own, or "sample", its
// sample id (none for a point without one).
func clusteredBy(t *testing.T, pts []Point, key string) []Point {
	t.Helper()
	out := append([]Point(nil), pts...)
	switch key {
	case "cluster":
	case "sample":
		for i := range out {
			out[i].Cluster, out[i].HasCluster = out[i].Sample, out[i].Sample != ""
		}
	default:
		t.Fatalf("cluster %q", key)
	}
	return out
}

// TestClusteredAgreesWithNumpy checks the clustered standard errors and
// intervals, of means and of differences, against testdata/reference.py's,
// with the whole report or comparison around them.
func TestClusteredAgreesWithNumpy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	var cases struct {
		Reports map[string]struct {
			Dataset, Cluster string
			Expected         any
		}
		Comparisons map[string]struct {
			Datasets []string
			Cluster  string
			Expected any
		}
	}
	b, _ := json.Marshal(exp["_clustered"])
	if err := json.Unmarshal(b, &cases); err != nil || len(cases.Reports) == 0 || len(cases.Comparisons) == 0 {
		t.Fatalf("expected.json has no clustered cases: %v", err)
	}
	for name, c := range cases.Reports {
		t.Run("report/"+name, func(t *testing.T) {
			got := toGeneric(t, AnalyzeWith(clusteredBy(t, data[c.Dataset], c.Cluster), AnalyzeOptions{Clustered: true}))
			for _, d := range agree(name, got, c.Expected) {
				t.Error(d)
			}
		})
	}
	for name, c := range cases.Comparisons {
		t.Run("compare/"+name, func(t *testing.T) {
			var treatments [][]Point
			for _, s := range c.Datasets[1:] {
				treatments = append(treatments, clusteredBy(t, data[s], c.Cluster))
			}
			cmp := Compare(clusteredBy(t, data[c.Datasets[0]], c.Cluster), treatments, CompareOptions{Resamples: 200, Seed: 7, Clustered: true})
			got := toGeneric(t, cmp).([]any)
			for _, c := range got {
				lat := c.(map[string]any)["latency"].(map[string]any)
				for _, k := range []string{"diff_median_ci95", "diff_p95_ci95", "diff_p99_ci95", "bootstrap_resamples", "seed"} {
					delete(lat, k)
				}
			}
			for _, d := range agree(name, any(got), c.Expected) {
				t.Error(d)
			}
		})
	}
}

// lat is a point with a latency in cluster c ("" with lone: no cluster).
func lat(x float64, c string, lone bool) Point {
	return Point{LatencyMs: x, CostUSD: math.NaN(), Success: -1, Cluster: c, HasCluster: !lone}
}

// TestClusteredMeanSE works the formula out by hand on small samples.
func TestClusteredMeanSE(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		name string
		pts  []Point
		se   float64 // NaN: null
	}{
		// Mean 2.5; deviations −1.5, −0.5 | 0.5, 1.5; sums −2, 2.
		{"two clusters", []Point{lat(1, "a", false), lat(2, "a", false), lat(3, "b", false), lat(4, "b", false)}, math.Sqrt(8) / 4},
		// Each its own: √(Σ d²)/n = √5/4.
		{"every event alone", []Point{lat(1, "", true), lat(2, "", true), lat(3, "", true), lat(4, "", true)}, math.Sqrt(5) / 4},
		{"singleton clusters", []Point{lat(1, "a", false), lat(2, "b", false), lat(3, "c", false), lat(4, "d", false)}, math.Sqrt(5) / 4},
		// Clusters a and b interleaved: order does not matter.
		{"interleaved", []Point{lat(1, "a", false), lat(3, "b", false), lat(2, "a", false), lat(4, "b", false)}, math.Sqrt(8) / 4},
		// Sums −2 (a) and the lone 1.5 and 0.5.
		{"a cluster and lone events", []Point{lat(1, "a", false), lat(2, "a", false), lat(3, "", true), lat(4, "", true)}, math.Sqrt(4+0.25+2.25) / 4},
		// "" is a cluster like any other, apart from the lone events.
		{"empty key", []Point{lat(1, "", false), lat(2, "", false), lat(3, "b", false), lat(4, "b", false)}, math.Sqrt(8) / 4},
		{"one cluster", []Point{lat(1, "a", false), lat(2, "a", false), lat(9, "a", false)}, nan},
		{"one event", []Point{lat(1, "a", false)}, nan},
		{"one lone event", []Point{lat(1, "", true)}, nan},
		{"no events", nil, nan},
		{"equal values", []Point{lat(5, "a", false), lat(5, "b", false)}, 0},
		// Beyond float64 unscaled: deviations ±1e308, squares 1e616.
		{"huge", []Point{lat(-1e308, "a", false), lat(1e308, "b", false)}, math.Sqrt2 * 1e308 / 2},
		{"huge, one cluster of two", []Point{lat(1e308, "a", false), lat(1e308, "a", false), lat(-1e308, "b", false), lat(-1e308, "b", false)},
			math.Sqrt(8) * 1e308 / 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := AnalyzeWith(c.pts, AnalyzeOptions{Clustered: true})
			se, ci := r.Latency.MeanSEClustered, r.Latency.MeanCI95Clustered
			if se == nil || ci == nil {
				t.Fatalf("no clustered fields: %+v", r.Latency)
			}
			if math.IsNaN(c.se) {
				if se.Valid() || ci[0].Valid() || ci[1].Valid() {
					t.Errorf("se %v ci %v, want null", *se, *ci)
				}
				return
			}
			if !near(float64(*se), c.se, 1e-14) {
				t.Errorf("se %v, want %v", *se, c.se)
			}
			m := float64(r.Latency.Mean)
			if !near(float64(ci[0]), m-zClustered*c.se, 1e-14) || !near(float64(ci[1]), m+zClustered*c.se, 1e-14) {
				t.Errorf("ci %v, want %v ± %v·%v", *ci, m, zClustered, c.se)
			}
		})
	}
}

func near(got, want, tol float64) bool {
	return got == want || math.Abs(got-want) <= tol*math.Max(math.Abs(got), math.Abs(want))
}

// TestClusteredSuccessRate: success counts 1, failure 0, over the judged
// events only.
func TestClusteredSuccessRate(t *testing.T) {
	ev := func(s int8, c string) Point {
		return Point{LatencyMs: math.NaN(), CostUSD: math.NaN(), Success: s, Cluster: c, HasCluster: c != ""}
	}
	cases := []struct {
		name string
		pts  []Point
		se   float64
	}{
		// p = 1/2; cluster a: 1, 1 → +1; b: 0, 0 → −1; se = √2/4.
		{"two clusters", []Point{ev(1, "a"), ev(1, "a"), ev(0, "b"), ev(0, "b")}, math.Sqrt2 / 4},
		// Unjudged events count for nothing, not even as clusters.
		{"unjudged left out", []Point{ev(1, "a"), ev(-1, "z"), ev(1, "a"), ev(0, "b"), ev(-1, "y"), ev(0, "b")}, math.Sqrt2 / 4},
		// p = 2/3; lone: +1/3, +1/3, −2/3: √(6/9)/3.
		{"lone events", []Point{ev(1, ""), ev(1, ""), ev(0, "")}, math.Sqrt(6.0/9) / 3},
		// p = 3/5; a: 1,1,0 → 3·… = 2 − 1.8 = 0.2; b: 1 → 0.4; lone 0 → −0.6.
		{"mixed", []Point{ev(1, "a"), ev(1, "a"), ev(0, "a"), ev(1, "b"), ev(0, "")}, math.Sqrt(0.04+0.16+0.36) / 5},
		{"one cluster", []Point{ev(1, "a"), ev(0, "a"), ev(-1, "b")}, math.NaN()},
		{"n = 1", []Point{ev(1, "a")}, math.NaN()},
		{"all successes", []Point{ev(1, "a"), ev(1, "b"), ev(1, "")}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rel := AnalyzeWith(c.pts, AnalyzeOptions{Clustered: true}).Reliability
			se := rel.SuccessRateSEClustered
			if se == nil || rel.SuccessRateCI95Clustered == nil {
				t.Fatal("no clustered fields")
			}
			if math.IsNaN(c.se) != !se.Valid() || (se.Valid() && !near(float64(*se), c.se, 1e-14)) {
				t.Errorf("se %v, want %v", *se, c.se)
			}
		})
	}
}

// TestClusteredDiff: a difference's interval is diff ± z·√(se_B² + se_T²),
// null when either side's se is.
func TestClusteredDiff(t *testing.T) {
	b := []Point{lat(1, "a", false), lat(2, "a", false), lat(3, "b", false), lat(4, "b", false)} // se √8/4
	tr := []Point{lat(11, "", true), lat(12, "", true), lat(13, "", true), lat(14, "", true)}    // se √5/4
	c := Compare(b, [][]Point{tr, b[:2]}, CompareOptions{Clustered: true})
	ci := c[0].Latency.DiffMeanCI95Clustered
	h := zClustered * math.Sqrt(8.0/16+5.0/16)
	if ci == nil || !near(float64(ci[0]), 10-h, 1e-14) || !near(float64(ci[1]), 10+h, 1e-14) {
		t.Errorf("diff ci %v, want 10 ± %v", ci, h)
	}
	if ci := c[1].Latency.DiffMeanCI95Clustered; ci == nil || ci[0].Valid() || ci[1].Valid() {
		t.Errorf("one cluster in the treatment: %v, want null", ci)
	}
	// Without latency at all, or no score on one side: null, present.
	s := c[0].SuccessRate.DiffCI95Clustered
	if co := c[0].Cost.DiffMeanPerRequestCI95Clustered; co == nil || co[0].Valid() || s == nil || s[0].Valid() {
		t.Errorf("cost %v success %v, want null", co, s)
	}
}

// TestClusteredFieldsOnlyWhenAsked: without the option the JSON is as it
// always was, with no clustered key; with it, every clustered key is
// there, null when undefined.
func TestClusteredFieldsOnlyWhenAsked(t *testing.T) {
	data := loadDatasets(t)
	base, treat := data["clu_sessions_base"], data["clu_sessions_treat"]
	keys := []string{"mean_se_clustered", "mean_ci95_clustered", "success_rate_se_clustered", "success_rate_ci95_clustered",
		"diff_mean_ci95_clustered", "diff_mean_per_request_ci95_clustered", "diff_ci95_clustered"}
	plain, _ := json.Marshal(Analyze(append([]Point(nil), base...)))
	opted, _ := json.Marshal(AnalyzeWith(append([]Point(nil), base...), AnalyzeOptions{}))
	if string(plain) != string(opted) {
		t.Error("AnalyzeWith without options differs from Analyze")
	}
	cmpPlain, _ := json.Marshal(Compare(base, [][]Point{treat}, CompareOptions{Resamples: 50}))
	for _, k := range keys {
		if strings.Contains(string(plain), k) || strings.Contains(string(cmpPlain), k) {
			t.Errorf("%s without clusters", k)
		}
	}
	clu, _ := json.Marshal(AnalyzeWith(append([]Point(nil), base...), AnalyzeOptions{Clustered: true}))
	cmpClu, _ := json.Marshal(Compare(base, [][]Point{treat}, CompareOptions{Resamples: 50, Clustered: true}))
	for k, want := range map[string]int{"mean_se_clustered": 4, "mean_ci95_clustered": 4, "success_rate_se_clustered": 1, "success_rate_ci95_clustered": 1} {
		if got := strings.Count(string(clu), `"`+k+`":`); got != want { // latency, cost, two scores
			t.Errorf("%s: %d times, want %d", k, got, want)
		}
	}
	for k, want := range map[string]int{"diff_mean_ci95_clustered": 3, "diff_mean_per_request_ci95_clustered": 1, "diff_ci95_clustered": 1} {
		if got := strings.Count(string(cmpClu), `"`+k+`":`); got != want { // latency and two scores
			t.Errorf("%s: %d times, want %d", k, got, want)
		}
	}
	// The rest of the answer is the same with and without clusters.
	var a, b map[string]any
	json.Unmarshal(clu, &a)
	json.Unmarshal(plain, &b)
	strip(a)
	if d := agree("report", a, b); len(d) > 0 {
		t.Error(d)
	}
	empty, _ := json.Marshal(AnalyzeWith(nil, AnalyzeOptions{Clustered: true}))
	for _, want := range []string{`"mean_se_clustered":null,"mean_ci95_clustered":[null,null]`, `"success_rate_se_clustered":null,"success_rate_ci95_clustered":[null,null]`} {
		if !strings.Contains(string(empty), want) {
			t.Errorf("empty analysis lacks %s: %s", want, empty)
		}
	}
}

// strip deletes the clustered keys of a decoded report.
func strip(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.HasSuffix(k, "_clustered") {
				delete(x, k)
				continue
			}
			strip(e)
		}
	case []any:
		for _, e := range x {
			strip(e)
		}
	}
}

// TestClusteredOrderAndScale: the clustered errors do not depend on the
// order of the events, and scale with the values exactly by powers of two.
func TestClusteredOrderAndScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pts := make([]Point, 5000)
	for i := range pts {
		c := rng.IntN(300)
		pts[i] = Point{LatencyMs: 1e6 + float64(c) + rng.NormFloat64(), CostUSD: math.NaN(), Success: int8(rng.IntN(2)),
			Cluster: strings.Repeat("k", 1+c%7) + string(rune('a'+c%26)) + string(rune('a'+c/26)), HasCluster: c%50 != 0}
	}
	se := func(pts []Point) float64 {
		return float64(*AnalyzeWith(pts, AnalyzeOptions{Clustered: true}).Latency.MeanSEClustered)
	}
	want := se(pts)
	shuffled := append([]Point(nil), pts...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if got := se(shuffled); !near(got, want, 1e-12) {
		t.Errorf("shuffled: %v, want %v", got, want)
	}
	for _, k := range []int{-400, 900} {
		scaled := append([]Point(nil), pts...)
		for i := range scaled {
			scaled[i].LatencyMs = math.Ldexp(scaled[i].LatencyMs, k)
		}
		if got := se(scaled); !near(got, math.Ldexp(want, k), 1e-12) {
			t.Errorf("scaled by 2^%d: %v, want %v", k, got, math.Ldexp(want, k))
		}
	}
}
