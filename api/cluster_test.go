package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// clusteredArm is an experiment's events in sessions: session s has
// 1+s%4 events, latency 100+10·s+shift+i, cost and success varying within
// it, team metadata of s%3 and an acc score; three events have no session.
func clusteredArm(sessions int, shift float64) string {
	base := time.Now().Add(-time.Minute).UnixMicro()
	var b strings.Builder
	n := 0
	line := func(session string, latency float64, cost float64, success bool, team string) {
		fmt.Fprintf(&b, `{"event_name":"x","timestamp":%d,"latency_ms":%v,"cost_usd":%v,"success":%v,"scores":{"acc":%v},"metadata":{%s"team":%s}}`+"\n",
			base+int64(n)*1000, latency, cost, success, math.Mod(latency, 7)/7, session, team)
		n++
	}
	for s := range sessions {
		for i := range 1 + s%4 {
			line(fmt.Sprintf(`"session_id":"s-%d",`, s), 100+10*float64(s)+shift+float64(i), 0.001*float64(1+i%2), (s+i)%3 != 0, fmt.Sprint(s%3))
		}
	}
	for i := range 3 {
		line("", 90+shift+float64(i), 0.002, i != 1, "null")
	}
	return b.String()
}

// sessionSE is the clustered standard error of the arm's mean latency by
// session, worked out directly from clusteredArm's values.
func sessionSE(sessions int, shift float64) float64 {
	type v struct {
		cluster string
		x       float64
	}
	var vs []v
	for s := range sessions {
		for i := range 1 + s%4 {
			vs = append(vs, v{fmt.Sprint(s), 100 + 10*float64(s) + shift + float64(i)})
		}
	}
	for i := range 3 {
		vs = append(vs, v{fmt.Sprint("lone", i), 90 + shift + float64(i)})
	}
	var mean float64
	for _, e := range vs {
		mean += e.x
	}
	mean /= float64(len(vs))
	sums := map[string]float64{}
	for _, e := range vs {
		sums[e.cluster] += e.x - mean
	}
	var ss float64
	for _, s := range sums {
		ss += s * s
	}
	return math.Sqrt(ss) / float64(len(vs))
}

// clusteredKeys are the JSON keys ?cluster= adds.
var clusteredKeys = []string{"mean_se_clustered", "mean_ci95_clustered", "success_rate_se_clustered", "success_rate_ci95_clustered",
	"diff_mean_ci95_clustered", "diff_mean_per_request_ci95_clustered", "diff_ci95_clustered"}

// withoutClustered decodes b with the clustered keys left out.
func withoutClustered(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if strings.HasSuffix(k, "_clustered") {
					delete(x, k)
				} else {
					strip(e)
				}
			}
		case []any:
			for _, e := range x {
				strip(e)
			}
		}
	}
	strip(v)
	return v
}

func TestClusteredMetricsAndCompare(t *testing.T) {
	f := newFixture(t, true)
	for id, arm := range map[string]string{"ctl": clusteredArm(12, 0), "trt": clusteredArm(15, 25)} {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"`+id+`","name":"`+id+`"}`))
		if r := f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(arm), "Content-Type", "application/x-ndjson"); r.code != 200 {
			t.Fatalf("ingest %s: %d %s", id, r.code, r.env.Error)
		}
	}
	type report struct {
		Latency struct {
			Mean float64     `json:"mean"`
			SE   *float64    `json:"mean_se_clustered"`
			CI   *[2]float64 `json:"mean_ci95_clustered"`
		} `json:"latency"`
		Cost struct {
			SE *float64    `json:"mean_se_clustered"`
			CI *[2]float64 `json:"mean_ci95_clustered"`
		} `json:"cost"`
		Reliability struct {
			SE *float64    `json:"success_rate_se_clustered"`
			CI *[2]float64 `json:"success_rate_ci95_clustered"`
		} `json:"reliability"`
		Scores map[string]struct {
			SE *float64    `json:"mean_se_clustered"`
			CI *[2]float64 `json:"mean_ci95_clustered"`
		} `json:"scores"`
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Abs(want) }

	t.Run("metrics", func(t *testing.T) {
		plain := f.do(t, "GET", "/api/v1/experiments/ctl/metrics", nil)
		for _, k := range clusteredKeys {
			if bytes.Contains(plain.env.Data, []byte(k)) {
				t.Errorf("%s without ?cluster=: %s", k, plain.env.Data)
			}
		}
		for _, key := range []string{"session_id", "user_id", "cohort", "sample_id", "metadata.team", "metadata.nope"} {
			t.Run(key, func(t *testing.T) {
				r := f.do(t, "GET", "/api/v1/experiments/ctl/metrics?cluster="+key, nil)
				var rep report
				if err := json.Unmarshal(r.env.Data, &rep); err != nil || r.code != 200 {
					t.Fatalf("%d %s %v", r.code, r.env.Error, err)
				}
				l := rep.Latency
				if l.SE == nil || l.CI == nil || rep.Cost.SE == nil || rep.Reliability.SE == nil || rep.Scores["acc"].SE == nil {
					t.Fatalf("clustered fields missing: %s", r.env.Data)
				}
				if key == "session_id" && !near(*l.SE, sessionSE(12, 0)) {
					t.Errorf("latency se %v, want %v", *l.SE, sessionSE(12, 0))
				}
				if h := 1.959963984540054 * *l.SE; !near(l.CI[0], l.Mean-h) || !near(l.CI[1], l.Mean+h) {
					t.Errorf("latency ci %v, want %v ± %v", *l.CI, l.Mean, h)
				}
				// The rest is the answer without ?cluster=.
				if got, want := jsonOf(withoutClustered(t, r.env.Data)), jsonOf(withoutClustered(t, plain.env.Data)); got != want {
					t.Errorf("with ?cluster= the rest differs:\n%s\n%s", got, want)
				}
			})
		}
		// Filters apply as without clusters: successes only, whose rate
		// has no error.
		r := f.do(t, "GET", "/api/v1/experiments/ctl/metrics?cluster=session_id&success=true", nil)
		var rep report
		json.Unmarshal(r.env.Data, &rep)
		if r.code != 200 || rep.Reliability.SE == nil || *rep.Reliability.SE != 0 || rep.Latency.SE == nil {
			t.Errorf("filtered: %d %s", r.code, r.env.Data)
		}
	})

	t.Run("compare", func(t *testing.T) {
		q := "/api/v1/compare?experiments=ctl,trt&bootstrap_resamples=100&seed=3"
		plain := f.do(t, "GET", q, nil)
		for _, k := range clusteredKeys {
			if bytes.Contains(plain.env.Data, []byte(k)) {
				t.Errorf("%s without ?cluster=", k)
			}
		}
		r := f.do(t, "GET", q+"&cluster=session_id", nil)
		var out struct {
			Individual []report `json:"individual"`
			Comparison map[string]struct {
				Latency struct {
					DiffMean float64     `json:"diff_mean"`
					CI       *[2]float64 `json:"diff_mean_ci95_clustered"`
				} `json:"latency"`
				Cost struct {
					CI *[2]float64 `json:"diff_mean_per_request_ci95_clustered"`
				} `json:"cost"`
				SuccessRate struct {
					CI *[2]float64 `json:"diff_ci95_clustered"`
				} `json:"success_rate"`
				Scores map[string]struct {
					CI *[2]float64 `json:"diff_mean_ci95_clustered"`
				} `json:"scores"`
			} `json:"comparison"`
		}
		if err := json.Unmarshal(r.env.Data, &out); err != nil || r.code != 200 || len(out.Individual) != 2 {
			t.Fatalf("%d %s %v", r.code, r.env.Error, err)
		}
		c := out.Comparison["trt"]
		if c.Latency.CI == nil || c.Cost.CI == nil || c.SuccessRate.CI == nil || c.Scores["acc"].CI == nil {
			t.Fatalf("clustered intervals missing: %s", r.env.Data)
		}
		for i, n := range []int{12, 15} {
			if se := out.Individual[i].Latency.SE; se == nil || !near(*se, sessionSE(n, float64(25*i))) {
				t.Errorf("individual %d: latency se %v, want %v", i, se, sessionSE(n, float64(25*i)))
			}
		}
		h := 1.959963984540054 * math.Hypot(sessionSE(12, 0), sessionSE(15, 25))
		if d := c.Latency.DiffMean; !near(c.Latency.CI[0], d-h) || !near(c.Latency.CI[1], d+h) {
			t.Errorf("diff ci %v, want %v ± %v", *c.Latency.CI, d, h)
		}
		if got, want := jsonOf(withoutClustered(t, r.env.Data)), jsonOf(withoutClustered(t, plain.env.Data)); got != want {
			t.Errorf("with ?cluster= the rest differs:\n%.600s\n%.600s", got, want)
		}
	})

	t.Run("bad", func(t *testing.T) {
		stored := f.stored(t, "ctl") + f.stored(t, "trt")
		for _, c := range []struct{ path, want string }{
			{"/api/v1/experiments/ctl/metrics?cluster=session", `bad request: cluster must be session_id, user_id, cohort, sample_id or metadata.<key>, got "session"`},
			{"/api/v1/experiments/ctl/metrics?cluster=", `got ""`},
			{"/api/v1/experiments/ctl/metrics?cluster=metadata.", `got "metadata."`},
			{"/api/v1/compare?experiments=ctl,trt&cluster=Session_ID", `got "Session_ID"`},
			{"/api/v1/experiments/ctl/metrics?cluster=session_id&cluster=user_id", "given 2 times"},
			{"/api/v1/experiments/ctl/metrics?clustr=session_id", `did you mean "cluster"?`},
			{"/api/v1/compare?experiments=ctl,trt&clusters=session_id", `did you mean "cluster"?`},
			// Only the analysis routes take it.
			{"/api/v1/experiments/ctl/events?cluster=session_id", `unknown query parameter "cluster"`},
			{"/api/v1/experiments/ctl/windows?cluster=session_id", `unknown query parameter "cluster"`},
			{"/api/v1/compare/pairs?experiments=ctl,trt&metric=success&cluster=session_id", `unknown query parameter "cluster"`},
			{"/api/v1/experiments/ctl/export?cluster=session_id", `unknown query parameter "cluster"`},
		} {
			t.Run(c.path, func(t *testing.T) {
				r := f.do(t, "GET", c.path, nil)
				if r.code != 400 || r.env.ErrorType != "bad_data" || !strings.Contains(r.env.Error, c.want) {
					t.Errorf("%d %s %q, want 400 bad_data with %q", r.code, r.env.ErrorType, r.env.Error, c.want)
				}
			})
		}
		if r := f.do(t, "GET", "/api/v1/experiments/nope/metrics?cluster=session_id", nil); r.code != 404 {
			t.Errorf("unknown experiment: %d", r.code)
		}
		if got := f.stored(t, "ctl") + f.stored(t, "trt"); got != stored {
			t.Errorf("stored events %d, then %d", stored, got)
		}
	})
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
