package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// offlineData stores, in a fresh data directory, experiments ids with
// n[i] events each (latency 100+i%40, +10 in the second; 90% success), in
// process rather than through the built binary.
func offlineData(t *testing.T, ids []string, n []int) string {
	t.Helper()
	dir := t.TempDir()
	m := experiment.NewManager(experiment.Options{
		Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: prometheus.NewRegistry()},
	})
	if err := m.Open(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for k, id := range ids {
		if _, _, err := m.Create(experiment.CreateRequest{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		var evs []*event.Event
		for i := range n[k] {
			e, err := event.Parse([]byte(fmt.Sprintf(`{"event_name":"x","timestamp":%d,"latency_ms":%d,"cost_usd":%g,"success":%v}`,
				now.Add(-time.Minute).UnixMicro()+int64(i)*1000, 100+i%40+10*k, 0.001*float64(1+i%3), i%10 != 0)), now, pricing.Default())
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, e)
		}
		if res, err := m.Ingest(id, evs, now); err != nil || res.Accepted != n[k] {
			t.Fatalf("ingest %s: %+v %v", id, res, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOfflineCompareShowsSequentialAndSRM(t *testing.T) {
	dir := offlineData(t, []string{"ctl", "trt"}, []int{400, 520})
	var out bytes.Buffer
	cf := compareFlags{storagePath: dir, format: "table", experiments: []string{"ctl", "trt"}, seed: 1, sequentialTuning: analysis.DefaultSequentialTuning}
	if code := runCompare(cf, &out); code != 0 {
		t.Fatalf("compare: %d", code)
	}
	table := out.String()
	for _, want := range []string{"anytime-valid 95% CS", "SAMPLE-RATIO MISMATCH", "ctl 400 (planned 50.0%)", "df=1"} {
		if !strings.Contains(table, want) {
			t.Errorf("compare table lacks %q:\n%s", want, table)
		}
	}
	// The latency line has two intervals: the classical and the sequence.
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, "latency mean") && strings.Count(line, "[") != 2 {
			t.Errorf("latency line: %q", line)
		}
	}
	out.Reset()
	cf.allocation = []float64{40, 52}
	if code := runCompare(cf, &out); code != 0 || !strings.Contains(out.String(), "as planned") || strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("compare with the planned allocation: %d\n%s", code, out.String())
	}
	out.Reset()
	cf.allocation = []float64{1, 1, 1}
	if code := runCompare(cf, &out); code == 0 {
		t.Error("three shares for two experiments accepted")
	}
	var l floatList = floatList{&cf.allocation}
	if err := l.Set("0.2, 0.8"); err != nil || l.String() != "0.2,0.8" {
		t.Errorf("allocation flag: %v %q", err, l.String())
	}
	if err := l.Set("1,-1"); err == nil {
		t.Error("negative share accepted")
	}
}

func TestOfflinePower(t *testing.T) {
	dir := offlineData(t, []string{"ctl"}, []int{300})
	var out bytes.Buffer
	pf := powerFlags{storagePath: dir, experiment: "ctl", format: "json", metric: "latency", mde: 2, alpha: 0.05, power: 0.8}
	if code := runPower(pf, &out); code != 0 {
		t.Fatalf("power: %d %s", code, out.String())
	}
	var got analysis.Power
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	var lat []float64
	for i := range 300 {
		lat = append(lat, float64(100+i%40))
	}
	want, _ := analysis.PowerOf("latency", lat, 2, 0.05, 0.8)
	if got.N != 300 || got.NPerArm == nil || *got.NPerArm != *want.NPerArm || math.Abs(float64(got.MDEAtN-want.MDEAtN)) > 1e-12 {
		t.Errorf("power %s, want %+v", out.String(), want)
	}
	out.Reset()
	pf.format = "table"
	if code := runPower(pf, &out); code != 0 || !strings.Contains(out.String(), fmt.Sprintf("events per arm: %d", *want.NPerArm)) {
		t.Errorf("table: %d\n%s", code, out.String())
	}
	for name, bad := range map[string]powerFlags{
		"score":  {storagePath: dir, experiment: "ctl", metric: "score:", mde: 1, alpha: 0.05, power: 0.8},
		"mde":    {storagePath: dir, experiment: "ctl", metric: "cost", mde: 0, alpha: 0.05, power: 0.8},
		"metric": {storagePath: dir, experiment: "ctl", metric: "tokens", mde: 1, alpha: 0.05, power: 0.8},
	} {
		if code := runPower(bad, &out); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	if code := runPower(powerFlags{storagePath: dir, experiment: "nope", metric: "cost", mde: 1, alpha: 0.05, power: 0.8}, &out); code != 1 {
		t.Errorf("missing experiment: exit %d, want 1", code)
	}
}
