package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// seedArms creates experiments ids with n[i] events each: latency 100+i%50
// (+10 in the second), 90% success, cost 0.01.
func seedArms(t *testing.T, f *fixture, ids []string, n []int) {
	t.Helper()
	base := time.Now().Add(-time.Minute).UnixMicro()
	for k, id := range ids {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"`+id+`","name":"`+id+`"}`))
		var lines []string
		for i := range n[k] {
			lines = append(lines, fmt.Sprintf(`{"event_name":"x","timestamp":%d,"latency_ms":%d,"cost_usd":0.01,"success":%v}`,
				base+int64(i)*1000, 100+i%50+k*10, i%10 != 0))
		}
		if r := f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson"); r.code != 200 {
			t.Fatalf("ingest %s: %d %s", id, r.code, r.env.Error)
		}
	}
}

func TestCompareSequentialAndSRM(t *testing.T) {
	f := newFixture(t, true)
	seedArms(t, f, []string{"ctl", "trt"}, []int{400, 520})
	type seq struct {
		CS95 [2]*float64 `json:"cs95"`
		P    *float64    `json:"p"`
	}
	var out struct {
		Comparison map[string]struct {
			Latency struct {
				DiffMeanCI95 [2]float64 `json:"diff_mean_ci95"`
				Sequential   seq        `json:"sequential"`
			} `json:"latency"`
			Cost        struct{ Sequential seq } `json:"cost"`
			SuccessRate struct{ Sequential seq } `json:"success_rate"`
		} `json:"comparison"`
		SRM struct {
			Counts         []int64   `json:"counts"`
			ExpectedShares []float64 `json:"expected_shares"`
			Chi2, P        float64
			DF             int   `json:"df"`
			Mismatch       *bool `json:"mismatch"`
		} `json:"srm"`
	}
	get := func(q string) {
		t.Helper()
		r := f.do(t, "GET", "/api/v1/compare?experiments=ctl,trt&bootstrap_resamples=0&"+q, nil)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", q, r.code, r.env.Error)
		}
		if err := json.Unmarshal(r.env.Data, &out); err != nil {
			t.Fatal(err)
		}
	}
	get("")
	l := out.Comparison["trt"].Latency
	if l.Sequential.CS95[0] == nil || *l.Sequential.CS95[0] > l.DiffMeanCI95[0] || *l.Sequential.CS95[1] < l.DiffMeanCI95[1] {
		t.Errorf("latency sequential %v around classical %v", l.Sequential.CS95, l.DiffMeanCI95)
	}
	// Every event costs the same: no variance, so no sequence.
	if c := out.Comparison["trt"].Cost.Sequential; c.P != nil || out.Comparison["trt"].SuccessRate.Sequential.P == nil {
		t.Errorf("cost %+v, success %+v", c, out.Comparison["trt"].SuccessRate.Sequential)
	}
	// 400 against 520 of an intended 50/50: χ² = 120²/920 = 15.65, a mismatch.
	s := out.SRM
	if len(s.Counts) != 2 || s.Counts[0] != 400 || s.Counts[1] != 520 || s.DF != 1 || math.Abs(s.Chi2-14400.0/920) > 1e-9 ||
		s.Mismatch == nil || !*s.Mismatch || s.ExpectedShares[0] != 0.5 {
		t.Errorf("srm %+v", s)
	}
	// Planned 40/52, the same counts are no mismatch.
	get("allocation=40,52")
	if s := out.SRM; s.Mismatch == nil || *s.Mismatch || math.Abs(s.P-1) > 1e-9 {
		t.Errorf("srm with allocation: %+v", s)
	}
	// A larger N* narrows the sequence at this n (about 900 events total
	// is below the default 5000, where it is tightest).
	get("")
	wide := *out.Comparison["trt"].Latency.Sequential.CS95[1] - *out.Comparison["trt"].Latency.Sequential.CS95[0]
	get("sequential_tuning=900")
	narrow := *out.Comparison["trt"].Latency.Sequential.CS95[1] - *out.Comparison["trt"].Latency.Sequential.CS95[0]
	if !(narrow < wide) {
		t.Errorf("sequential width at N*=900 %v, at 5000 %v", narrow, wide)
	}
	for _, q := range []string{"sequential_tuning=0", "sequential_tuning=abc", "sequential_tuning=Inf", "allocation=1", "allocation=1,0",
		"allocation=1,-2", "allocation=1,x", "allocation=1,1,1", "alocation=1,1"} {
		t.Run(q, func(t *testing.T) {
			if r := f.do(t, "GET", "/api/v1/compare?experiments=ctl,trt&"+q, nil); r.code != 400 {
				t.Errorf("%d %s, want 400", r.code, r.env.Data)
			}
		})
	}
}

func TestPowerEndpoint(t *testing.T) {
	f := newFixture(t, true)
	seedArms(t, f, []string{"ctl"}, []int{500})
	var p struct {
		Metric   string   `json:"metric"`
		N        int      `json:"n"`
		Mean     float64  `json:"mean"`
		Variance float64  `json:"variance"`
		MDE      float64  `json:"mde"`
		Alpha    float64  `json:"alpha"`
		Power    float64  `json:"power"`
		NPerArm  *int64   `json:"n_per_arm"`
		MDEAtN   *float64 `json:"mde_at_n"`
	}
	r := f.do(t, "GET", "/api/v1/experiments/ctl/power?metric=success&mde=0.05", nil)
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.env.Error)
	}
	json.Unmarshal(r.env.Data, &p)
	// 450 of 500 succeed: σ² = 500/499·0.09; (1.959964 + 0.841621)² = 7.848879.
	v := 500.0 / 499 * 0.09
	want := int64(math.Ceil(2 * 7.848879734 * v / 0.0025))
	if p.Metric != "success" || p.N != 500 || p.Mean != 0.9 || math.Abs(p.Variance-v) > 1e-12 || p.Alpha != 0.05 || p.Power != 0.8 ||
		p.NPerArm == nil || *p.NPerArm != want || p.MDEAtN == nil || math.Abs(*p.MDEAtN-math.Sqrt(7.848879734*2*v/500)) > 1e-6 {
		t.Errorf("power %s, want n_per_arm %d", r.env.Data, want)
	}
	r = f.do(t, "GET", "/api/v1/experiments/ctl/power?metric=latency&mde=2&alpha=0.01&power=0.9&success=true", nil)
	json.Unmarshal(r.env.Data, &p)
	if r.code != 200 || p.Metric != "latency" || p.N != 450 || p.Alpha != 0.01 || p.Power != 0.9 {
		t.Errorf("latency, filtered: %d %s", r.code, r.env.Data)
	}
	for _, c := range []struct {
		q, want string
		code    int
	}{
		{"metric=score:&mde=1", "unknown metric", 400},
		{"metric=latancy&mde=1", "unknown metric", 400},
		{"mde=1", "needs metric", 400},
		{"metric=cost", "needs metric", 400},
		{"metric=cost&mde=0", "mde must be", 400},
		{"metric=cost&mde=x", "mde must be a number", 400},
		{"metric=cost&mde=1&alpha=1", "alpha must be", 400},
		{"metric=cost&mde=1&power=1.5", "power must be", 400},
		{"metric=cost&mde=1&pwer=0.9", `did you mean "power"`, 400},
	} {
		t.Run(c.q, func(t *testing.T) {
			if r := f.do(t, "GET", "/api/v1/experiments/ctl/power?"+c.q, nil); r.code != c.code || !strings.Contains(r.env.Error, c.want) {
				t.Errorf("%d %q, want %d with %q", r.code, r.env.Error, c.code, c.want)
			}
		})
	}
	if r := f.do(t, "GET", "/api/v1/experiments/nope/power?metric=cost&mde=1", nil); r.code != 404 {
		t.Errorf("unknown experiment: %d", r.code)
	}
}
