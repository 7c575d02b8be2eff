package analysis

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestParseGateCheck(t *testing.T) {
	for _, c := range []struct {
		in   string
		want GateCheck
		err  string
	}{
		{in: "latency_mean:25", want: GateCheck{"latency_mean", 25, false}},
		{in: "latency_p95:5%", want: GateCheck{"latency_p95", 5, true}},
		{in: "cost_mean:0.0001", want: GateCheck{"cost_mean", 0.0001, false}},
		{in: "success_rate:0", want: GateCheck{"success_rate", 0, false}},
		{in: "success_rate: 2.5 %", want: GateCheck{"success_rate", 2.5, true}},
		{in: "score:exact_match:0.02", want: GateCheck{"score:exact_match", 0.02, false}},
		{in: "score:judge:helpful:10%", want: GateCheck{"score:judge:helpful", 10, true}},
		{in: "latency_mean", err: "want METRIC:MARGIN"},
		{in: "latency:5", err: `unknown metric "latency"`},
		{in: "score::5", err: "unknown metric"},
		{in: "score:5", err: "unknown metric"},
		{in: "latency_mean:-1", err: "must be a number ≥ 0"},
		{in: "latency_mean:%", err: "must be a number ≥ 0"},
		{in: "latency_mean:", err: "must be a number ≥ 0"},
		{in: "latency_mean:NaN", err: "must be a number ≥ 0"},
		{in: "latency_mean:Inf", err: "must be a number ≥ 0"},
		{in: "latency_mean:5ms", err: "must be a number ≥ 0"},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseGateCheck(c.in)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %+v, %v; want an error with %q", got, err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
			if again, err := ParseGateCheck(got.String()); err != nil || again != got {
				t.Errorf("String %q reads back as %+v, %v", got.String(), again, err)
			}
		})
	}
}

// gateFixture is a comparison whose unpaired and paired intervals differ,
// so that which one the gate read shows in the verdict.
func gateFixture(pairs int) (Report, Comparison) {
	r := Analyze(nil)
	r.Latency.Mean, r.Latency.P95, r.Cost.MeanPerRequest, r.Reliability.SuccessRate = 200, 400, 0.01, 0.9
	r.Scores = map[string]ScoreDescription{"acc": {Count: 50, Mean: 0.8}}
	paired := func(lo, hi Null) PairedStats {
		return PairedStats{N: pairs, DiffMean: (lo + hi) / 2, DiffMeanCI95: [2]Null{lo, hi}}
	}
	var c Comparison
	c.Latency.DiffMean, c.Latency.DiffMeanCI95 = 15, [2]Null{5, 25}
	c.Latency.DiffP95, c.Latency.DiffP95CI95 = 30, [2]Null{10.5, 50}
	c.Cost.DiffMeanPerRequest, c.Cost.DiffMeanPerRequestCI95 = 0.001, [2]Null{-0.0005, 0.0025}
	c.SuccessRate.Diff, c.SuccessRate.DiffCI95 = -0.05, [2]Null{-0.08, -0.02}
	c.Scores = map[string]ScoreComparison{"acc": {MeanDiff: MeanDiff{DiffMean: -0.02, DiffMeanCI95: [2]Null{-0.05, 0.01}}}}
	c.Paired = Paired{Key: PairKey, NPairs: pairs,
		Latency: paired(12, 18),
		Cost:    paired(0.0011, 0.0012),
		Success: PairedSuccess{PairedStats: paired(-0.03, -0.01)},
		Scores:  map[string]PairedStats{"acc": paired(-0.04, -0.031)},
	}
	return r, c
}

func TestGateVerdicts(t *testing.T) {
	for _, c := range []struct {
		name    string
		pairs   int
		check   string
		method  string
		verdict string
	}{
		// Unpaired latency interval [5, 25]: a regression beyond a margin
		// below 5, not beyond one of 5 or more.
		{"latency just outside the margin", 0, "latency_mean:4.99", "welch", VerdictRegression},
		{"latency at the margin", 0, "latency_mean:5", "welch", VerdictPass},
		{"latency inside the margin", 0, "latency_mean:10", "welch", VerdictPass},
		{"latency relative: 2% of 200 is 4", 0, "latency_mean:2%", "welch", VerdictRegression},
		{"latency relative: 3% of 200 is 6", 0, "latency_mean:3%", "welch", VerdictPass},
		// Nine pairs are too few: the unpaired interval; ten: the paired
		// one, [12, 18].
		{"nine pairs: unpaired", 9, "latency_mean:10", "welch", VerdictPass},
		{"ten pairs: paired", 10, "latency_mean:10", "paired_t", VerdictRegression},
		{"p95 is always the bootstrap's", 50, "latency_p95:10", "bootstrap", VerdictRegression},
		{"p95 relative: 3% of 400 is 12", 50, "latency_p95:3%", "bootstrap", VerdictPass},
		{"cost unpaired straddles 0", 0, "cost_mean:0", "welch", VerdictPass},
		{"cost paired above 0.001", 10, "cost_mean:0.001", "paired_t", VerdictRegression},
		{"cost paired, relative 20% of 0.01", 10, "cost_mean:20%", "paired_t", VerdictPass},
		// Success: worse is lower; Newcombe [-0.08, -0.02].
		{"success below -margin", 0, "success_rate:0.01", "newcombe", VerdictRegression},
		{"success at -margin", 0, "success_rate:0.02", "newcombe", VerdictPass},
		{"success relative 2% of 0.9", 0, "success_rate:2%", "newcombe", VerdictRegression},
		{"success paired [-0.03, -0.01]", 10, "success_rate:0.02", "paired_t", VerdictPass},
		{"score unpaired straddles", 9, "score:acc:0", "welch", VerdictPass},
		{"score paired below -0.03", 10, "score:acc:0.03", "paired_t", VerdictRegression},
		{"score paired relative 5% of 0.8 is 0.04", 10, "score:acc:5%", "paired_t", VerdictPass},
		{"score neither arm has", 10, "score:nope:0.1", "welch", VerdictNoData},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, cmp := gateFixture(c.pairs)
			ck, err := ParseGateCheck(c.check)
			if err != nil {
				t.Fatal(err)
			}
			res := Gate(r, cmp, []GateCheck{ck})
			v := res.Checks[0]
			if v.Method != c.method || v.Verdict != c.verdict {
				t.Errorf("%s: method %s, verdict %s; want %s, %s (%+v)", c.check, v.Method, v.Verdict, c.method, c.verdict, v)
			}
			if res.Passed != (c.verdict == VerdictPass) || res.MissingData != (c.verdict == VerdictNoData) {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestGateNoData(t *testing.T) {
	r, c := gateFixture(20)
	c.Paired.Latency.DiffMeanCI95 = [2]Null{NaN, NaN} // differences without variance
	c.Latency.DiffP95CI95 = [2]Null{NaN, NaN}         // no bootstrap
	r.Cost.MeanPerRequest = NaN                       // no baseline for a relative margin
	c.SuccessRate.DiffCI95 = [2]Null{NaN, NaN}
	c.Paired.Success.N = 3
	var checks []GateCheck
	for _, s := range []string{"latency_mean:50", "latency_p95:10", "cost_mean:5%", "success_rate:0.1"} {
		ck, _ := ParseGateCheck(s)
		checks = append(checks, ck)
	}
	res := Gate(r, c, checks)
	want := []struct{ method, verdict string }{
		{"welch", VerdictPass}, // the paired interval is undefined: the unpaired one
		{"bootstrap", VerdictNoData},
		{"paired_t", VerdictNoData},
		{"newcombe", VerdictNoData},
	}
	for i, w := range want {
		if v := res.Checks[i]; v.Method != w.method || v.Verdict != w.verdict {
			t.Errorf("%s: %+v, want %s %s", v.Metric, v, w.method, w.verdict)
		}
	}
	if res.Passed || !res.MissingData || res.ExitCode() != 2 {
		t.Errorf("result %+v, exit %d", res, res.ExitCode())
	}
	// A regression and missing data: still 2, the data must be fixed first.
	c.Latency.DiffMeanCI95 = [2]Null{60, 70}
	if res := Gate(r, c, checks); res.Checks[0].Verdict != VerdictRegression || res.ExitCode() != 2 {
		t.Errorf("regression and no data: %+v", res)
	}
	if res := Gate(r, c, checks[:1]); res.ExitCode() != 1 {
		t.Errorf("regression: exit %d", res.ExitCode())
	}
	if res := Gate(r, c, nil); !res.Passed || res.ExitCode() != 0 || res.Checks == nil {
		t.Errorf("no checks: %+v", res)
	}
}

// TestGateOverJSON: the gate reads nothing that JSON loses, so it judges
// a running sidecar's /api/v1/compare as it judges the data directly.
func TestGateOverJSON(t *testing.T) {
	data := loadDatasets(t)
	for name, arms := range map[string][2]string{
		"paired":   {"eval_base", "eval_treat_a"},
		"few":      {"pair_one_base", "pair_one_treat"},
		"unpaired": {"control", "treatment_a"},
	} {
		t.Run(name, func(t *testing.T) {
			b, tr := data[arms[0]], data[arms[1]]
			report := Analyze(append([]Point(nil), b...))
			comp := Compare(b, [][]Point{tr}, CompareOptions{Resamples: 200, Seed: 3})[0]
			var checks []GateCheck
			for _, s := range []string{"latency_mean:5%", "latency_p95:20", "cost_mean:0", "success_rate:0.01",
				"score:exact_match:0.05", "score:judge.helpfulness:1%", "score:q:0"} {
				ck, err := ParseGateCheck(s)
				if err != nil {
					t.Fatal(err)
				}
				checks = append(checks, ck)
			}
			direct := Gate(report, comp, checks)

			var r2 Report
			var c2 Comparison
			rb, _ := json.Marshal(report)
			cb, _ := json.Marshal(comp)
			if err := json.Unmarshal(rb, &r2); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(cb, &c2); err != nil {
				t.Fatal(err)
			}
			viaJSON := Gate(r2, c2, checks)
			d, _ := json.Marshal(direct)
			j, _ := json.Marshal(viaJSON)
			if string(d) != string(j) || direct.MissingData != viaJSON.MissingData {
				t.Errorf("direct %s\nvia JSON %s", d, j)
			}
			for i := range direct.Checks {
				if a, b := direct.Checks[i].Threshold, viaJSON.Checks[i].Threshold; a != b && (a.Valid() || b.Valid()) {
					t.Errorf("%s: threshold %v, via JSON %v", direct.Checks[i].Metric, a, b)
				}
			}
		})
	}
}

func TestWriteGate(t *testing.T) {
	r, c := gateFixture(10)
	var checks []GateCheck
	for _, s := range []string{"latency_mean:2%", "success_rate:0.02", "score:nope:0"} {
		ck, _ := ParseGateCheck(s)
		checks = append(checks, ck)
	}
	var out bytes.Buffer
	if err := WriteGate(&out, Gate(r, c, checks[:2])); err != nil {
		t.Fatal(err)
	}
	want := `metric        margin  regression when the CI is  diff     95% CI              method    verdict
latency_mean  2%      above +4.00                +15.00   [12.00, 18.00]      paired_t  REGRESSION
success_rate  0.02    below -0.0200              -0.0200  [-0.0300, -0.0100]  paired_t  pass

FAILED: regressed beyond the margin: latency_mean
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	WriteGate(&out, Gate(r, c, checks[2:]))
	if s := out.String(); !strings.Contains(s, "NO VERDICT: no data to judge score:nope") || !strings.Contains(s, "no data") {
		t.Errorf("no data:\n%s", s)
	}
}
