package api

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// pairedArm is one evaluation run: samples q-000 … q-(n−1), each answered
// once, with latency, success and an exact_match score from the functions
// of i; extra lines follow.
func pairedArm(n int, latency func(i int) float64, success, exact func(i int) bool, extra ...string) string {
	base := time.Now().Add(-time.Minute).UnixMicro()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"event_name":"eval.sample","timestamp":%d,"latency_ms":%v,"cost_usd":0.01,"success":%v,"scores":{"exact_match":%v},"metadata":{"model":"m","sample_id":"q-%03d"}}`+"\n",
			base+int64(i)*1000, latency(i), success(i), exact(i), i)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	return b.String()
}

type pairList struct {
	Key       string `json:"key"`
	Metric    string `json:"metric"`
	Improved  int    `json:"improved"`
	Regressed int    `json:"regressed"`
	Ties      int    `json:"ties"`
	Pairs     []struct {
		SampleID  string  `json:"sample_id"`
		Baseline  float64 `json:"baseline"`
		Treatment float64 `json:"treatment"`
		Diff      float64 `json:"diff"`
	} `json:"pairs"`
}

type wantPair struct {
	id      string
	b, t, d float64
}

// expectPairs sorts pairs as the API lists them: by |diff|, the largest
// first, then by sample id.
func expectPairs(ps []wantPair) []wantPair {
	slices.SortFunc(ps, func(x, y wantPair) int {
		return cmp.Or(cmp.Compare(math.Abs(y.d), math.Abs(x.d)), strings.Compare(x.id, y.id))
	})
	return ps
}

func TestComparePairs(t *testing.T) {
	f := newFixture(t, true)
	const n = 120
	b := func(i int) bool { return i%10 != 0 }
	tr := func(i int) bool { return i%7 != 0 }
	ts := time.Now().Add(-30 * time.Second).UnixMicro()
	arms := map[string]string{
		"ctl": pairedArm(n, func(i int) float64 { return float64(100 + i%30) }, b, func(i int) bool { return i%2 == 0 },
			// Only the baseline answered q-900; an event without a sample is in no pair.
			fmt.Sprintf(`{"event_name":"eval.sample","timestamp":%d,"latency_ms":1,"success":true,"metadata":{"sample_id":"q-900"}}`, ts),
			fmt.Sprintf(`{"event_name":"eval.sample","timestamp":%d,"latency_ms":1,"success":true}`, ts)),
		"trt": pairedArm(n, func(i int) float64 { return float64(90 + i%30 + i%4) }, tr, func(i int) bool { return i%3 == 0 },
			// A repetition of q-001: that sample's treatment value is the mean of its two events.
			fmt.Sprintf(`{"event_name":"eval.sample","timestamp":%d,"latency_ms":200,"success":false,"scores":{"exact_match":0},"metadata":{"model":"other","sample_id":"q-001"}}`, ts),
			fmt.Sprintf(`{"event_name":"eval.sample","timestamp":%d,"latency_ms":1,"success":true,"metadata":{"sample_id":"q-901"}}`, ts)),
	}
	for _, id := range []string{"ctl", "trt"} {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"`+id+`","name":"`+id+`"}`))
		if r := f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(arms[id]), "Content-Type", "application/x-ndjson"); r.code != 200 {
			t.Fatalf("ingest %s: %d %s", id, r.code, r.env.Error)
		}
	}
	one := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	// The expected pairs of each metric, and the treatment's value of q-001
	// with its repetition.
	expected := func(metric string, filtered bool) []wantPair {
		var ps []wantPair
		for i := range n {
			var bv, tv, rep float64
			switch metric {
			case "success":
				bv, tv, rep = one(b(i)), one(tr(i)), 0
			case "latency":
				bv, tv, rep = float64(100+i%30), float64(90+i%30+i%4), 200
			case "score:exact_match":
				bv, tv, rep = one(i%2 == 0), one(i%3 == 0), 0
			}
			if i == 1 && !filtered {
				tv = (tv + rep) / 2
			}
			ps = append(ps, wantPair{fmt.Sprintf("q-%03d", i), bv, tv, tv - bv})
		}
		return expectPairs(ps)
	}
	get := func(t *testing.T, q string) pairList {
		t.Helper()
		r := f.do(t, "GET", "/api/v1/compare/pairs?"+q, nil)
		if r.code != 200 || r.env.Status != "success" {
			t.Fatalf("%s: %d %s", q, r.code, r.env.Error)
		}
		var pl pairList
		if err := json.Unmarshal(r.env.Data, &pl); err != nil {
			t.Fatalf("%s: %v in %s", q, err, r.env.Data)
		}
		return pl
	}
	for _, c := range []struct {
		name, q, metric string
		limit           int
		filtered        bool // model=m leaves out the repetition of q-001
		higherIsBetter  bool
	}{
		{"success, default limit", "experiments=ctl,trt&metric=success", "success", DefaultPairsLimit, false, true},
		{"latency, limit 7", "experiments=ctl,trt&metric=latency&limit=7", "latency", 7, false, false},
		{"score, every pair", "experiments=ctl,trt&metric=score:exact_match&limit=1000", "score:exact_match", n, false, true},
		{"filtered", "experiments=ctl,trt&metric=latency&limit=1000&model=m", "latency", n, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pl := get(t, c.q)
			want := expected(c.metric, c.filtered)
			var improved, regressed, ties int
			for _, p := range want {
				switch better := p.d > 0 == c.higherIsBetter; {
				case p.d == 0:
					ties++
				case better:
					improved++
				default:
					regressed++
				}
			}
			if pl.Key != "sample_id" || pl.Metric != c.metric || pl.Improved != improved || pl.Regressed != regressed || pl.Ties != ties {
				t.Errorf("key %q metric %q improved %d regressed %d ties %d, want sample_id %s %d %d %d",
					pl.Key, pl.Metric, pl.Improved, pl.Regressed, pl.Ties, c.metric, improved, regressed, ties)
			}
			if len(pl.Pairs) != c.limit {
				t.Fatalf("%d pairs, want %d", len(pl.Pairs), c.limit)
			}
			for i, p := range pl.Pairs {
				w := want[i]
				if p.SampleID != w.id || math.Abs(p.Baseline-w.b) > 1e-12 || math.Abs(p.Treatment-w.t) > 1e-12 || math.Abs(p.Diff-w.d) > 1e-12 {
					t.Errorf("pair %d: %+v, want %+v", i, p, w)
				}
			}
		})
	}
	t.Run("experiments without samples in common", func(t *testing.T) {
		f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"empty","name":"empty"}`))
		pl := get(t, "experiments=ctl,empty&metric=success")
		if pl.Pairs == nil || len(pl.Pairs) != 0 || pl.Improved+pl.Regressed+pl.Ties != 0 {
			t.Errorf("%+v, want no pairs, as [] not null", pl)
		}
	})

	stored := f.stored(t, "ctl") + f.stored(t, "trt")
	for _, c := range []struct {
		q    string
		code int
		want string
	}{
		{"metric=success", 400, "exactly two"},
		{"experiments=ctl&metric=success", 400, "exactly two"},
		{"experiments=ctl,trt,empty&metric=success", 400, "exactly two"},
		{"experiments=ctl,ctl&metric=success", 400, "named twice"},
		{"experiments=ctl,bad$id&metric=success", 400, "invalid experiment id"},
		{"experiments=ctl,trt", 400, "metric is required"},
		{"experiments=ctl,trt&metric=tokens", 400, "tokens"},
		{"experiments=ctl,trt&metric=score:", 400, "score"},
		{"experiments=ctl,trt&metric=success&limit=0", 400, "limit must be a positive integer"},
		{"experiments=ctl,trt&metric=success&limit=-3", 400, "limit must be a positive integer"},
		{"experiments=ctl,trt&metric=success&limit=ten", 400, "limit must be a positive integer"},
		{"experiments=ctl,trt&metric=success&limit=1&limit=2", 400, `"limit" given 2 times`},
		{"experiments=ctl,trt&metric=success&limt=5", 400, `did you mean "limit"`},
		{"experiments=ctl,trt&metric=success&seed=5", 400, `unknown query parameter "seed"`},
		{"experiments=ctl,trt&metric=success&success=maybe", 400, "success must be true or false"},
		{"experiments=ctl,nope&metric=success", 404, "nope"},
		{"experiments=nope,trt&metric=success", 404, "nope"},
		{"experiments=nope,trt&metric=tokens", 400, "tokens"}, // the request is checked first
	} {
		t.Run(c.q, func(t *testing.T) {
			r := f.do(t, "GET", "/api/v1/compare/pairs?"+c.q, nil)
			wantType := map[int]string{400: "bad_data", 404: "not_found"}[c.code]
			if r.code != c.code || r.env.Status != "error" || r.env.ErrorType != wantType || !strings.Contains(r.env.Error, c.want) {
				t.Errorf("%d %s %q, want %d %s with %q", r.code, r.env.ErrorType, r.env.Error, c.code, wantType, c.want)
			}
		})
	}
	if got := f.stored(t, "ctl") + f.stored(t, "trt"); got != stored {
		t.Errorf("bad requests changed the stored events: %d, then %d", stored, got)
	}
	for _, m := range []string{"POST", "DELETE"} {
		if r := f.do(t, m, "/api/v1/compare/pairs?experiments=ctl,trt&metric=success", nil); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d, Allow %q", m, r.code, r.header.Get("Allow"))
		}
	}
}

// TestLandingPageListsComparisons: the landing page names the comparison
// routes with their parameters, under the route prefix.
func TestLandingPageListsComparisons(t *testing.T) {
	f := newFixture(t, true)
	for _, prefix := range []string{"", "/crucible"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			h, err := f.api.Handler(RouteOptions{Prefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			resp, err := http.Get(srv.URL + prefix + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{
				"<code>GET " + prefix + "/api/v1/experiments/{id}/metrics[?cluster=session_id|user_id|cohort|sample_id|metadata.&lt;key&gt;]</code>",
				"<code>GET " + prefix + "/api/v1/compare?experiments=A,B[,C...][&amp;cluster=&lt;key&gt;]</code>",
				"<code>GET " + prefix + "/api/v1/compare/pairs?experiments=A,B&amp;metric=success|latency|cost|score:&lt;name&gt;&amp;limit=100</code>",
			} {
				if !strings.Contains(string(b), want) {
					t.Errorf("landing page lacks %s:\n%s", want, b)
				}
			}
		})
	}
}
