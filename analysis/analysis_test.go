package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The expected values come from numpy and scipy (testdata/reference.py),
// an implementation independent of this one.

type refPoint struct {
	TS      int64    `json:"ts"`
	Event   string   `json:"event"`
	Latency *float64 `json:"latency"`
	Cost    *float64 `json:"cost"`
	Success *bool    `json:"success"`
	Tokens  []int64  `json:"tokens"`
	Sample  string   `json:"sample"` // absent: no sample id
	// Scores are written as an object; Point holds them sorted by name.
	Scores map[string]float64 `json:"scores"`
	// Cluster is the value of the ?cluster= key; absent: the event has none.
	Cluster *string `json:"cluster"`
}

// loadDatasets reads the datasets once for all tests; they must not
// change the points (hand Analyze and Windows copies).
func loadDatasets(t *testing.T) map[string][]Point {
	t.Helper()
	datasetsOnce.Do(func() { datasets, datasetsErr = readDatasets() })
	if datasetsErr != nil {
		t.Fatal(datasetsErr)
	}
	return datasets
}

var (
	datasetsOnce sync.Once
	datasets     map[string][]Point
	datasetsErr  error
)

func readDatasets() (map[string][]Point, error) {
	b, err := os.ReadFile("testdata/datasets.json")
	if err != nil {
		return nil, err
	}
	var raw map[string][]refPoint
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := map[string][]Point{}
	for name, rps := range raw {
		for _, r := range rps {
			p := Point{TimestampUs: r.TS, Event: r.Event, LatencyMs: math.NaN(), CostUSD: math.NaN(), Success: -1}
			if r.Latency != nil {
				p.LatencyMs = *r.Latency
			}
			if r.Cost != nil {
				p.CostUSD = *r.Cost
			}
			if r.Success != nil {
				p.Success = 0
				if *r.Success {
					p.Success = 1
				}
			}
			if r.Tokens != nil {
				p.HasTokens, p.Prompt, p.Completion, p.Total = true, r.Tokens[0], r.Tokens[1], r.Tokens[2]
			}
			p.Sample = r.Sample
			if r.Cluster != nil {
				p.Cluster, p.HasCluster = *r.Cluster, true
			}
			for name, v := range r.Scores {
				p.Scores = append(p.Scores, Score{name, v})
			}
			slices.SortFunc(p.Scores, func(a, b Score) int { return strings.Compare(a.Name, b.Name) })
			out[name] = append(out[name], p)
		}
	}
	return out, nil
}

func loadExpected(t *testing.T) map[string]map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp map[string]map[string]any
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		t.Fatal(err)
	}
	if c, ok := all["_comparisons"]; ok {
		delete(all, "_comparisons")
		defer func() { exp["_comparisons"] = c.(map[string]any) }()
		b, _ = json.Marshal(all)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	return exp
}

// toGeneric round-trips v through JSON, as a client reads it.
func toGeneric(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// agree compares got with want: numbers to 1e-9 relative (p-values, whose
// tails the libraries compute differently, to 1e-6), the rest exactly.
func agree(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want an object", path, got)}
		}
		var diffs []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			diffs = append(diffs, agree(path+"."+k, g[k], w[k])...)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: unexpected field", path, k))
			}
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %d items", path, got, len(w))}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, agree(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return diffs
	case float64:
		g, ok := got.(float64)
		if !ok {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, w)}
		}
		tol := 1e-9
		if strings.HasSuffix(path, "_p") || strings.HasSuffix(path, ".p") || strings.HasSuffix(path, "p_holm") {
			tol = 1e-6
		}
		if g != w && math.Abs(g-w) > tol*math.Max(math.Abs(g), math.Abs(w)) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, g, w)}
		}
		return nil
	default:
		if got != want {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		return nil
	}
}

func TestAnalyzeAgreesWithNumpy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	for name, pts := range data {
		t.Run(name, func(t *testing.T) {
			got := toGeneric(t, Analyze(append([]Point(nil), pts...)))
			for _, d := range agree(name, got, exp[name]["report"]) {
				t.Error(d)
			}
		})
	}
}

func TestWindowsAgreeWithNumpy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	for _, c := range []struct {
		dataset, key string
		size, step   int64
	}{
		{"random", "windows_5m_5m", 300_000_000, 300_000_000},
		{"random", "windows_10m_150s", 600_000_000, 150_000_000},
		{"seed_ten", "windows_1h_1h", 3_600_000_000, 3_600_000_000},
	} {
		t.Run(c.key, func(t *testing.T) {
			got := toGeneric(t, Windows(append([]Point(nil), data[c.dataset]...), c.size, c.step))
			for _, d := range agree(c.key, got, exp[c.dataset][c.key]) {
				t.Error(d)
			}
		})
	}
}

// TestSeedValues are the seed library's own test values.
func TestSeedValues(t *testing.T) {
	var lat []float64
	for i := 1; i <= 100; i++ {
		lat = append(lat, float64(i))
	}
	d := Describe(lat)
	if d.P50 != 50.5 || math.Abs(float64(d.P95)-95.05) > 1e-12 || math.Abs(float64(d.P99)-99.01) > 1e-12 {
		t.Fatalf("latencies 1..100: %+v", d)
	}
	var pts []Point
	for i := 1; i <= 10; i++ {
		s := int8(0)
		if i <= 8 {
			s = 1
		}
		pts = append(pts, Point{TimestampUs: int64(i), LatencyMs: 100 * float64(i), CostUSD: 0.001 * float64(i), Success: s})
	}
	r := Analyze(pts)
	if r.Latency.Mean != 550 || r.Latency.Median != 550 || math.Abs(float64(r.Cost.Total)-0.055) > 1e-15 || r.Reliability.SuccessRate != 0.8 {
		t.Fatalf("seed: latency %+v cost %+v reliability %+v", r.Latency, r.Cost, r.Reliability)
	}
}

func TestEmptyIsCompleteAndNull(t *testing.T) {
	b, _ := json.Marshal(Analyze(nil))
	want := `{"summary":{"total_events":0,"time_range":{"start":null,"end":null},"duration_seconds":null,"event_types":{}},` +
		`"latency":{"count":0,"mean":null,"median":null,"std_dev":null,"min":null,"max":null,"p50":null,"p90":null,"p95":null,"p99":null},` +
		`"cost":{"count":0,"total":null,"mean_per_request":null,"median_per_request":null,"cost_per_1k_requests":null,"cost_per_1m_requests":null},` +
		`"reliability":{"total_requests":0,"judged":0,"successful":0,"failed":0,"success_rate":null,"failure_rate":null,"success_rate_ci95":[null,null],"sla_99":null,"sla_999":null,"sla_9999":null},` +
		`"tokens":{"count":0,"total_prompt":0,"total_completion":0,"total":0,"mean_prompt":null,"mean_completion":null,"mean_total":null},"scores":{},"events":{}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

func TestWindowsCoverShortRuns(t *testing.T) {
	// The seed returned nothing when the data spanned less than one window.
	pts := []Point{{TimestampUs: 10, LatencyMs: 1, Success: 1}, {TimestampUs: 20, LatencyMs: 3, Success: 0}}
	w := Windows(pts, 300_000_000, 300_000_000)
	if len(w) != 1 || w[0].EventCount != 2 || w[0].WindowStart != 10 {
		t.Fatalf("windows %+v", w)
	}
	// Far-apart events: empty windows are skipped, not walked one by one.
	far := []Point{{TimestampUs: 0, LatencyMs: 1}, {TimestampUs: 365 * 24 * 3600 * 1e6, LatencyMs: 2}}
	if w := Windows(far, 1e6, 1e6); len(w) != 2 || w[1].WindowStart != 365*24*3600*1e6 {
		t.Fatalf("far windows %+v", w)
	}
}

func TestPercentilesMatchSorting(t *testing.T) {
	for _, n := range []int{1, 2, 3, 65, 100, 1000, 4097} {
		for _, ties := range []bool{false, true} {
			t.Run(fmt.Sprintf("n=%d,ties=%v", n, ties), func(t *testing.T) {
				xs := make([]float64, n)
				for i := range xs {
					xs[i] = float64((i * 7919) % (n + 3))
					if ties {
						xs[i] = float64(i % 4)
					}
				}
				sorted := append([]float64(nil), xs...)
				sort.Float64s(sorted)
				ps := []float64{0, 1, 50, 90, 95, 99, 99.9, 100}
				got := Percentiles(append([]float64(nil), xs...), ps...)
				for i, p := range ps {
					if want := Percentile(sorted, p); got[i] != want {
						t.Errorf("p%v: got %v, want %v", p, got[i], want)
					}
				}
			})
		}
	}
}

func TestCompareAgreesWithScipy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	cases := map[string][]string{
		"control_vs_a_b":  {"control", "treatment_a", "treatment_b"},
		"control_vs_a":    {"control", "treatment_a"},
		"ties":            {"ties", "all_failures"},
		"n1_vs_n2":        {"n1", "n2"},
		"no_latency_side": {"all_null_latency", "seed_ten"},
		"seed_vs_random":  {"seed_ten", "random"},
		"far_tail":        {"far_baseline", "far_treatment", "very_far_treatment"},
		"eval_a_b":        {"eval_base", "eval_treat_a", "eval_treat_b"},
		"eval_a":          {"eval_base", "eval_treat_a"},
		"eval_b_vs_a":     {"eval_treat_b", "eval_treat_a"},
		"pair_one":        {"pair_one_base", "pair_one_treat"},
		"pair_equal":      {"pair_equal_base", "pair_equal_treat"},
		"pair_far":        {"pair_far_base", "pair_far_treat"},
		"noscore":         {"noscore_base", "noscore_treat"},
		"noscore_vs_eval": {"noscore_base", "eval_base", "eval_treat_b"},
	}
	for name, sets := range cases {
		t.Run(name, func(t *testing.T) {
			var treatments [][]Point
			for _, s := range sets[1:] {
				treatments = append(treatments, data[s])
			}
			got := toGeneric(t, Compare(data[sets[0]], treatments, CompareOptions{Resamples: 200, Seed: 7})).([]any)
			// The bootstrap's intervals are checked by TestBootstrapMatchesResampling.
			for _, c := range got {
				lat := c.(map[string]any)["latency"].(map[string]any)
				for _, k := range []string{"diff_median_ci95", "diff_p95_ci95", "diff_p99_ci95", "bootstrap_resamples", "seed"} {
					delete(lat, k)
				}
			}
			want := exp["_comparisons"][name]
			for _, d := range agree(name, any(got), want) {
				t.Error(d)
			}
		})
	}
}

// TestBootstrapMatchesResampling checks the order-statistic bootstrap
// against plain resampling: their 95% intervals agree within Monte Carlo
// error, and the same seed gives the same intervals.
func TestBootstrapMatchesResampling(t *testing.T) {
	if testing.Short() {
		t.Skip("24000 plain resamples: slow; runs without -short")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	draw := func(n int, mu float64) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = math.Round(math.Exp(mu+0.7*rng.NormFloat64())*10) / 10 // ties, like real latencies
		}
		return xs
	}
	b, tr := draw(400, 6), draw(350, 5.9)
	const resamples = 8000
	ps := []float64{50, 95, 99}
	fast := BootstrapPercentileDiffs(b, tr, ps, resamples, 42)
	again := BootstrapPercentileDiffs(b, tr, ps, resamples, 42)
	for i := range ps {
		if fast[i] != again[i] {
			t.Fatalf("p%v: the same seed gave %v and %v", ps[i], fast[i], again[i])
		}
		// Plain resampling.
		diffs := make([]float64, resamples)
		rb, rt := make([]float64, len(b)), make([]float64, len(tr))
		for r := range diffs {
			for j := range rb {
				rb[j] = b[rng.IntN(len(b))]
			}
			for j := range rt {
				rt[j] = tr[rng.IntN(len(tr))]
			}
			sort.Float64s(rb)
			sort.Float64s(rt)
			diffs[r] = Percentile(rt, ps[i]) - Percentile(rb, ps[i])
		}
		sort.Float64s(diffs)
		lo, hi := Percentile(diffs, 2.5), Percentile(diffs, 97.5)
		width := hi - lo
		if math.Abs(float64(fast[i].CI95[0])-lo) > 0.1*width || math.Abs(float64(fast[i].CI95[1])-hi) > 0.1*width {
			t.Errorf("p%v: order-statistic bootstrap %v, resampling [%v %v]", ps[i], fast[i].CI95, lo, hi)
		}
		t.Logf("p%v: order statistics [%.2f %.2f], resampling [%.2f %.2f]", ps[i], fast[i].CI95[0], fast[i].CI95[1], lo, hi)
	}
}

// TestHugeFiniteValues: finite inputs whose sum or squared deviations
// overflow still give a finite mean, standard deviation and percentiles;
// only a result that is itself beyond float64 is null.
func TestHugeFiniteValues(t *testing.T) {
	const big = math.MaxFloat64
	inf := math.Inf(1)
	cases := []struct {
		name          string
		xs            []float64
		mean, sd, p50 float64
	}{
		{"two 1e308", []float64{1e308, 1e308}, 1e308, 0, 1e308},
		{"three max", []float64{big, big, big}, big, 0, big},
		{"zero and 1e308", []float64{0, 1e308}, 5e307, 1e308 / math.Sqrt2, 5e307},
		{"opposite signs", []float64{-1e308, 1e308}, 0, 1e308 * math.Sqrt2, 0},
		{"skewed", []float64{1e308, 1e308, 1.5e308}, 3.5e308 / 3, 1e308 / math.Sqrt(12), 1e308},
		{"std dev beyond float64", []float64{-big, big}, 0, inf, 0},
		{"small values unchanged", []float64{1, 2, 3, 4}, 2.5, math.Sqrt(5.0 / 3), 2.5},
	}
	near := func(got, want float64) bool {
		if math.IsInf(want, 0) {
			return !Null(got).Valid()
		}
		return got == want || math.Abs(got-want) <= 1e-12*math.Max(math.Abs(got), math.Abs(want))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Describe(append([]float64(nil), c.xs...))
			if !near(float64(d.Mean), c.mean) || !near(float64(d.StdDev), c.sd) || !near(float64(d.P50), c.p50) {
				t.Errorf("mean %v sd %v p50 %v, want %v %v %v", d.Mean, d.StdDev, d.P50, c.mean, c.sd, c.p50)
			}
			if got := Percentile(c.xs, 50); !near(got, c.p50) { // the cases are sorted
				t.Errorf("Percentile: %v, want %v", got, c.p50)
			}
		})
	}

	// Through the report: the latency mean of two 1e308 latencies, the cost
	// mean of two 1e308 costs (whose total is beyond float64) and the
	// window mean are numbers, not null.
	pts := []Point{
		{TimestampUs: 1, Event: "x", LatencyMs: 1e308, CostUSD: 1e308, Success: 1},
		{TimestampUs: 2, Event: "x", LatencyMs: 1e308, CostUSD: 1e308, Success: 1},
	}
	r := toGeneric(t, Analyze(append([]Point(nil), pts...))).(map[string]any)
	lat, cost := r["latency"].(map[string]any), r["cost"].(map[string]any)
	if lat["mean"] != 1e308 || lat["std_dev"] != 0.0 || cost["mean_per_request"] != 1e308 || cost["total"] != nil {
		t.Errorf("latency %v, cost %v", lat, cost)
	}
	ws := toGeneric(t, Windows(pts, 60e6, 60e6)).([]any)
	if len(ws) != 1 || ws[0].(map[string]any)["mean_latency"] != 1e308 {
		t.Errorf("windows %v", ws)
	}
}
