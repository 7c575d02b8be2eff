package demo_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/api"
	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/demo"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

func sidecar(t *testing.T) *httptest.Server {
	reg := prometheus.NewRegistry()
	m := experiment.NewManager(experiment.Options{
		Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Metrics: collector.New(reg, collector.Options{}),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: reg},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.New(api.Options{Manager: m, Prices: pricing.NewHolder(pricing.Default()), MaxRequestBytes: 1 << 20, Registerer: reg}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); m.Close() })
	return srv
}

// TestDemoShowsADifference: the demo's events are stored and accepted, and
// the comparison finds what the arms were built to differ in.
func TestDemoShowsADifference(t *testing.T) {
	if testing.Short() {
		t.Skip("streams into a sidecar for two seconds: slow; runs without -short")
	}
	srv := sidecar(t)
	cfg := demo.Config{Target: srv.URL, Rate: 2000, Duration: 1500 * time.Millisecond, SampleSize: 100_000, Seed: 7}
	sent, err := demo.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A second run finds the experiments from the first.
	cfg.Duration = 500 * time.Millisecond
	more, err := demo.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range demo.Arms {
		if sent[a.ID] < 1000 || more[a.ID] == 0 {
			t.Fatalf("%s: accepted %d then %d events", a.ID, sent[a.ID], more[a.ID])
		}
	}

	resp, err := http.Get(srv.URL + "/api/v1/compare?experiments=demo-control,demo-treatment")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type interval [2]*float64
	var body struct {
		Data struct {
			Comparison map[string]struct {
				Scores map[string]struct {
					DiffMean     float64  `json:"diff_mean"`
					DiffMeanCI95 interval `json:"diff_mean_ci95"`
				} `json:"scores"`
				Paired struct {
					NPairs int `json:"n_pairs"`
					Scores map[string]struct {
						N            int      `json:"n"`
						DiffMean     float64  `json:"diff_mean"`
						DiffMeanCI95 interval `json:"diff_mean_ci95"`
					} `json:"scores"`
				} `json:"paired"`
			} `json:"comparison"`
			Individual []struct {
				Summary struct {
					TotalEvents int64 `json:"total_events"`
				} `json:"summary"`
				Latency struct {
					P50 float64 `json:"p50"`
				} `json:"latency"`
				Cost struct {
					Total float64 `json:"total"`
				} `json:"cost"`
				Reliability struct {
					SuccessRate float64 `json:"success_rate"`
				} `json:"reliability"`
			} `json:"individual"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if len(body.Data.Individual) != 2 {
		t.Fatalf("compare: %+v", body)
	}
	control, treatment := body.Data.Individual[0], body.Data.Individual[1]
	for i, r := range body.Data.Individual {
		id := demo.Arms[i].ID
		if r.Summary.TotalEvents != sent[id]+more[id] {
			t.Errorf("%s: %d events stored, %d accepted", id, r.Summary.TotalEvents, sent[id]+more[id])
		}
	}
	if !(treatment.Latency.P50 < control.Latency.P50) {
		t.Errorf("median latency: treatment %v, control %v; the treatment is the faster arm", treatment.Latency.P50, control.Latency.P50)
	}
	if !(treatment.Cost.Total > 0 && treatment.Cost.Total < control.Cost.Total/5) {
		t.Errorf("cost: treatment %v, control %v; gpt-4o-mini costs a fraction of gpt-4o", treatment.Cost.Total, control.Cost.Total)
	}
	if !(control.Reliability.SuccessRate > 0.9 && control.Reliability.SuccessRate < 1) {
		t.Errorf("control success rate %v", control.Reliability.SuccessRate)
	}
	// The arms answer the same samples: the judge's grades pair, and the
	// paired interval of the treatment's quality loss is the narrower.
	c := body.Data.Comparison[demo.Arms[1].ID]
	unpaired, paired := c.Scores["judge.helpfulness"], c.Paired.Scores["judge.helpfulness"]
	width := func(i interval) float64 {
		if i[0] == nil || i[1] == nil {
			return math.Inf(1)
		}
		return *i[1] - *i[0]
	}
	if c.Paired.NPairs < 100 || paired.N != c.Paired.NPairs {
		t.Fatalf("paired: %d pairs, %d with a judge grade", c.Paired.NPairs, paired.N)
	}
	if !(paired.DiffMean < 0 && paired.DiffMeanCI95[1] != nil && *paired.DiffMeanCI95[1] < 0) {
		t.Errorf("paired judge.helpfulness: diff %v, interval %v; the treatment answers a little worse", paired.DiffMean, paired.DiffMeanCI95)
	}
	if !(width(paired.DiffMeanCI95) < width(unpaired.DiffMeanCI95)) {
		t.Errorf("paired interval %v is not narrower than the unpaired %v", width(paired.DiffMeanCI95), width(unpaired.DiffMeanCI95))
	}
}

func TestDemoReportsABadTarget(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	if _, err := demo.Run(context.Background(), demo.Config{Target: srv.URL, Rate: 10, Duration: time.Second}); err == nil {
		t.Fatal("no error from a target that is not a sidecar")
	}
	if _, err := demo.Run(context.Background(), demo.Config{Target: srv.URL}); err == nil {
		t.Fatal("no error for a zero rate")
	}
}
