package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTool finds an installed tool. In CI (CI set) a missing tool fails the
// test; on a developer's machine the test is skipped with the command that
// installs it.
func needTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI installs it with: %s)", name, install)
	}
	t.Skipf("%s is not installed; install it with: %s", name, install)
	return ""
}

const installPrometheus = "apt-get update && apt-get install -y prometheus"

// TestPromtoolCheckMetrics lints the sidecar's /metrics with promtool.
func TestPromtoolCheckMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	promtool := needTool(t, "promtool", installPrometheus)
	s := startSidecar(t, t.TempDir())
	defer s.stop(syscall.SIGTERM)
	s.post("/api/v1/experiments", `{"id":"lint","name":"Lint","sample_size":10}`)
	s.post("/api/v1/experiments/lint/events", `{"event_name":"req_llm.request.stop","latency_ms":12,"metadata":{"model":"gpt-4","provider":"openai","tokens":{"prompt":1,"completion":2}},"success":true}`)
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// typ7 is the R type-7 percentile of sorted xs.
func typ7(xs []float64, p float64) float64 {
	h := p * float64(len(xs)-1)
	lo := math.Floor(h)
	if int(lo)+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	return xs[int(lo)] + (h-lo)*(xs[int(lo)+1]-xs[int(lo)])
}

// TestPrometheusScrapesSidecar runs Debian's real Prometheus against the
// built sidecar: protobuf scrapes with native histograms, event counts that
// add up, and a p95 from the native histogram within its bucket error.
func TestPrometheusScrapesSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar and Prometheus: slow; runs without -short")
	}
	prom := needTool(t, "prometheus", installPrometheus)
	dir := t.TempDir()
	s := startSidecar(t, filepath.Join(dir, "data"))
	defer s.stop(syscall.SIGTERM)

	// A known workload: 3000 events, latencies spread over three decades.
	const n = 3000
	var lat []float64
	var sb strings.Builder
	for i := range n {
		ms := 20 * math.Exp(float64(i%1000)/1000*math.Log(200)) // 20 ms .. 4 s
		lat = append(lat, ms/1000)
		model := []string{"gpt-4o", "claude-sonnet-4-5"}[i%2]
		fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","latency_ms":%g,"success":%v,"metadata":{"model":%q,"tokens":{"prompt":100,"completion":50}}}`+"\n", ms, i%10 != 0, model)
	}
	s.post("/api/v1/experiments", `{"id":"prom","name":"Prom","condition":"treatment"}`)
	if code, body := s.post("/api/v1/experiments/prom/events", sb.String()); code != 200 || !strings.Contains(body, fmt.Sprintf(`"accepted":%d`, n)) {
		t.Fatalf("ingest: %d %s", code, body)
	}
	slices.Sort(lat)
	exactP95 := typ7(lat, 0.95)

	addr := freePort(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	target := strings.TrimPrefix(s.url, "http://")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: crucible\n    static_configs:\n      - targets: [%q]\n", target)), 0o644)
	logs := startProcess(t, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+addr, "--enable-feature=native-histograms")

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		v, err := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
		return v, err == nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if v, ok := query(`sum(crucible_events_total{experiment_id="prom"})`); ok && v == n {
			break
		}
		if time.Now().After(deadline) {
			v, _ := query(`sum(crucible_events_total{experiment_id="prom"})`)
			t.Fatalf("Prometheus saw %v events, want %d\n%s", v, n, logs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p95, ok := query(`histogram_quantile(0.95, sum(crucible_latency_seconds{experiment_id="prom"}))`)
	if !ok || math.IsNaN(p95) {
		t.Fatalf("no p95 from the native histogram (scraped as protobuf?)\n%s", logs)
	}
	if rel := math.Abs(p95-exactP95) / exactP95; rel > 0.05 {
		t.Fatalf("p95 from the native histogram %v, exact %v: %.1f%% off, more than the bucket error", p95, exactP95, 100*rel)
	}
	if v, ok := query(`sum(crucible_events_total{experiment_id="prom",outcome="failure"})`); !ok || v != n/10 {
		t.Fatalf("failures %v, want %d", v, n/10)
	}
	t.Logf("p95: native histogram %.4f s, exact %.4f s", p95, exactP95)
}

// TestArchiveIsStandard: an archive unpacks into a data directory whose
// TSDB blocks promtool reads and hold one sample per event per number, and
// that the offline commands read.
func TestArchiveIsStandard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	promtool := needTool(t, "promtool", installPrometheus)
	dir := t.TempDir()
	s := startSidecar(t, dir)
	s.post("/api/v1/experiments", `{"id":"arc","name":"Arc"}`)
	var sb strings.Builder
	base := time.Now().Add(-3 * time.Minute).UnixMicro()
	const n = 2000
	for i := range n {
		// Out of order, and bursts in one millisecond.
		fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","timestamp":%d,"latency_ms":%d,"cost_usd":0.001,"success":%v,"metadata":{"model":"gpt-4o","tokens":{"prompt":3,"completion":4}}}`+"\n",
			base+int64((i*7919)%n/4)*1000, i%300+1, i%5 != 0)
	}
	if code, body := s.post("/api/v1/experiments/arc/events", sb.String()); code != 200 || !strings.Contains(body, fmt.Sprintf(`"accepted":%d`, n)) {
		t.Fatalf("ingest: %d %s", code, body)
	}
	if code, body := s.post("/api/v1/experiments/arc/archive", ""); code != 200 || !strings.Contains(body, `"status":"archived"`) {
		t.Fatalf("archive: %d %s", code, body)
	}
	s.stop(syscall.SIGTERM)

	unpacked := t.TempDir()
	if out, err := exec.Command("tar", "-xzf", filepath.Join(dir, "archives", "arc.tar.gz"), "-C", unpacked).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	tsdbDir := filepath.Join(unpacked, "experiments", "arc", "tsdb")
	if out, err := exec.Command(promtool, "tsdb", "analyze", tsdbDir).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb analyze: %v\n%s", err, out)
	}
	counts := countSamples(t, tsdbDir)
	for _, m := range []string{"crucible_event_latency_seconds", "crucible_event_cost_usd", "crucible_event_success", "crucible_event_prompt_tokens"} {
		if counts[m] != n {
			t.Errorf("%s: %d samples in the archive, want %d", m, counts[m], n)
		}
	}
	out, err := exec.Command(binary, "analyze", "--storage.path="+unpacked, "--experiment=arc", "--format=json").Output()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf(`"total_events": %d`, n)) {
		t.Fatalf("analyze of the unpacked archive: %v\n%s", err, out)
	}
}
