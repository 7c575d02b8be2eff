package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// binary is the sidecar built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test that runs the binary skips with -short: no build.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "crucible-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, appName)
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type sidecar struct {
	t    *testing.T
	cmd  *exec.Cmd
	root string // scheme and host
	url  string // where the routes are: root and the route prefix
	logs *syncBuffer
	done chan error
	// exited is closed once the process has exited, however a test waits
	// for it.
	exited chan struct{}
}

// syncBuffer collects the sidecar's output while tests read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProcess starts a program for the rest of the test, its output
// collected; the test's cleanup stops it with SIGTERM.
func startProcess(t *testing.T, name string, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(name, args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	return logs
}

// runBinary runs the built sidecar with args and returns its standard
// output; a failure fails the test with what it printed.
func runBinary(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v\n%s%s", args, err, out, stderr.String())
	}
	return string(out)
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSidecar starts the built sidecar and waits until it is ready, under
// the route prefix when args set --web.route-prefix.
func startSidecar(t *testing.T, dataDir string, args ...string) *sidecar {
	t.Helper()
	addr := freePort(t)
	s := &sidecar{t: t, root: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1), exited: make(chan struct{})}
	s.url = s.root
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, "--web.route-prefix="); ok && strings.Trim(p, "/") != "" {
			s.url = s.root + "/" + strings.Trim(p, "/")
		}
	}
	s.cmd = exec.Command(binary, append([]string{"--web.listen-address=" + addr, "--storage.path=" + dataDir}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		close(s.exited)
		s.done <- err
	}()
	// A test that does not stop its sidecar leaves no process behind.
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("sidecar exited during start-up: %v\n%s", err, s.logs)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("sidecar not ready\n%s", s.logs)
	return nil
}

// stop sends sig and waits for the exit code; a stopped sidecar gives it
// again.
func (s *sidecar) stop(sig syscall.Signal) int {
	s.t.Helper()
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("sidecar did not exit on %v\n%s", sig, s.logs)
	}
	return s.cmd.ProcessState.ExitCode()
}

func (s *sidecar) post(path, body string) (int, string) {
	resp, err := http.Post(s.url+path, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *sidecar) get(path string, into any) {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		s.t.Fatal(err)
	}
	if err := json.Unmarshal(env.Data, into); err != nil {
		s.t.Fatal(err)
	}
}

func TestCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	for _, args := range [][]string{{"--help"}, {"version"}, {"--version"}, {"serve", "--help"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), appName) {
			t.Errorf("%v: output does not name the program:\n%s", args, out)
		}
	}
	if err := exec.Command(binary, "--no-such-flag").Run(); err == nil {
		t.Error("an unknown flag must fail")
	}
	out, err := exec.Command(binary, "--web.route-prefix=/{id}", "--storage.path="+t.TempDir(), "--web.listen-address=127.0.0.1:0").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "route prefix") {
		t.Errorf("a route prefix with a wildcard: %v\n%s", err, out)
	}
}

// TestServeEndToEnd walks the README's first steps against the built
// binary, at the root and under a route prefix.
func TestServeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	for _, prefix := range []string{"", "/crucible"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			var args []string
			if prefix != "" {
				args = append(args, "--web.route-prefix="+prefix)
			}
			s := startSidecar(t, t.TempDir(), args...)
			for _, p := range []string{"/", "/metrics", "/-/healthy", "/api/v1/event-types"} {
				resp, err := http.Get(s.url + p)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("GET %s: %v %v", p, err, resp)
				}
				resp.Body.Close()
			}
			code, body := s.post("/api/v1/experiments", `{"id":"demo","name":"Demo"}`)
			if code != 201 {
				t.Fatalf("create: %d %s", code, body)
			}
			code, body = s.post("/api/v1/experiments/demo/events", `{"event_name":"req_llm.request.stop","measurements":{"duration":150000000},"metadata":{"model":"gpt-4","tokens":{"prompt":100,"completion":200},"response":"hi"}}`)
			if code != 200 || !strings.Contains(body, `"accepted":1`) {
				t.Fatalf("ingest: %d %s", code, body)
			}
			var evs []map[string]any
			s.get("/api/v1/experiments/demo/events", &evs)
			if len(evs) != 1 || evs[0]["cost_usd"] != 0.015 || evs[0]["latency_ms"] != 150.0 || evs[0]["success"] != true {
				t.Fatalf("stored event: %v", evs)
			}
			resp, _ := http.Get(s.url + "/metrics")
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{`crucible_build_info`, `crucible_ingest_events_total{result="accepted"} 1`, `prometheus_tsdb_head_series{experiment_id="demo"}`, `go_goroutines`, `process_resident_memory_bytes`} {
				if !strings.Contains(string(metrics), want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			if prefix != "" {
				// Beside the prefix, the root leads to it and nothing else answers.
				for _, p := range []string{"/", "/metrics", "/-/ready", "/api/v1/event-types"} {
					resp, err := http.Get(s.root + p)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if p == "/" && resp.Request.URL.Path != prefix+"/" {
						t.Errorf("GET / beside the prefix ended at %s", resp.Request.URL)
					} else if p != "/" && resp.StatusCode != 404 {
						t.Errorf("GET %s beside the prefix: %d, want 404", p, resp.StatusCode)
					}
				}
			}
			if code := s.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("exit code %d after SIGTERM\n%s", code, s.logs)
			}
			if !strings.Contains(s.logs.String(), "storage closed") {
				t.Fatalf("storage not closed on SIGTERM:\n%s", s.logs)
			}
		})
	}
}

// ingestUntilStopped sends batches with client-chosen ids from several
// clients until the sidecar goes away, and returns the ids of every event
// whose request got a 2xx answer.
func ingestUntilStopped(t *testing.T, s *sidecar, clients int) map[string]bool {
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	base := time.Now().UnixMicro()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; ; b++ {
				var sb strings.Builder
				ids := make([]string, 0, 200)
				for i := range 200 {
					id := fmt.Sprintf("c%d-b%d-e%d", c, b, i)
					ids = append(ids, id)
					// Many events share a millisecond, and clients interleave.
					// A score on every event: scored records go through the crash too.
					fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","event_id":%q,"timestamp":%d,"latency_ms":%d,"success":%v,"scores":{"judge":%d},"metadata":{"model":"gpt-4","sample_id":"q-%d","tokens":{"prompt":10,"completion":5}}}`+"\n",
						id, base+int64(b*200+i)*50, i+1, i%7 != 0, i%5, i)
				}
				code, _ := s.post("/api/v1/experiments/crash/events", sb.String())
				if code == 0 {
					return // the sidecar is gone
				}
				if code == 200 {
					mu.Lock()
					for _, id := range ids {
						acked[id] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return acked
}

// TestKillNineLosesNothingAcknowledged kills the sidecar during concurrent
// ingest and checks that every acknowledged event is in the log and that
// the TSDB holds one sample per stored event per number.
func TestKillNineLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the built sidecar during ingest: slow; runs without -short")
	}
	dir := t.TempDir()
	s := startSidecar(t, dir)
	if code, body := s.post("/api/v1/experiments", `{"id":"crash","name":"Crash"}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	go func() {
		time.Sleep(1500 * time.Millisecond)
		s.cmd.Process.Signal(syscall.SIGKILL)
	}()
	acked := ingestUntilStopped(t, s, 4)
	<-s.done
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}

	s = startSidecar(t, dir)
	var rec struct {
		EventsStored int64 `json:"events_stored"`
	}
	s.get("/api/v1/experiments/crash", &rec)
	var evs []struct {
		EventID string `json:"event_id"`
	}
	s.get("/api/v1/experiments/crash/events?limit=100000000", &evs)
	stored := map[string]bool{}
	for _, e := range evs {
		stored[e.EventID] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged event %s is missing after kill -9 (acked %d, stored %d)", id, len(acked), len(stored))
		}
	}
	if int64(len(evs)) != rec.EventsStored || len(stored) != len(evs) {
		t.Fatalf("events %d, distinct %d, events_stored %d", len(evs), len(stored), rec.EventsStored)
	}
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d\n%s", code, s.logs)
	}

	// Read the TSDB as the sidecar left it.
	counts := countSamples(t, filepath.Join(dir, "experiments", "crash", "tsdb"))
	for _, m := range []string{tsdbstore.MetricLatency, tsdbstore.MetricCost, tsdbstore.MetricSuccess, tsdbstore.MetricPromptTokens, tsdbstore.MetricCompletionTokens, tsdbstore.MetricScore} {
		if counts[m] != int(rec.EventsStored) {
			t.Errorf("%s: %d samples, want %d (one per stored event)", m, counts[m], rec.EventsStored)
		}
	}
	t.Logf("acknowledged %d, stored %d", len(acked), rec.EventsStored)
}

// TestSIGTERMDrains stops the sidecar during ingest: it finishes the requests
// in flight, exits 0, and everything it acknowledged is there after a restart.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("stops the built sidecar during ingest: slow; runs without -short")
	}
	dir := t.TempDir()
	s := startSidecar(t, dir)
	s.post("/api/v1/experiments", `{"id":"crash","name":"Drain"}`)
	go func() {
		time.Sleep(time.Second)
		s.cmd.Process.Signal(syscall.SIGTERM)
	}()
	acked := ingestUntilStopped(t, s, 2)
	<-s.done
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, s.logs)
	}
	s = startSidecar(t, dir)
	defer s.stop(syscall.SIGTERM)
	var rec struct {
		EventsStored int64 `json:"events_stored"`
	}
	s.get("/api/v1/experiments/crash", &rec)
	if rec.EventsStored < int64(len(acked)) {
		t.Fatalf("stored %d < acknowledged %d", rec.EventsStored, len(acked))
	}
	if strings.Contains(s.logs.String(), "torn tail") {
		t.Fatalf("a clean shutdown left a torn log:\n%s", s.logs)
	}
}

func TestPricingFileAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	prices := filepath.Join(dir, "prices.yaml")
	os.WriteFile(prices, []byte("models:\n  my-llm: {input: 1, output: 2}\n"), 0o644)
	s := startSidecar(t, filepath.Join(dir, "data"), "--pricing.file="+prices)
	defer s.stop(syscall.SIGTERM)
	s.post("/api/v1/experiments", `{"id":"p","name":"P"}`)
	send := func() {
		s.post("/api/v1/experiments/p/events", `{"event_name":"x","metadata":{"model":"my-llm","tokens":{"prompt":1000000,"completion":1000000}}}`)
	}
	send()
	os.WriteFile(prices, []byte("models:\n  my-llm: {input: 10, output: 20}\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.logs.String(), "reloaded the price table") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	send()
	os.WriteFile(prices, []byte("models: [broken"), 0o644)
	if code, _ := s.post("/-/reload", ""); code != 400 {
		t.Fatalf("reload of a broken file: %d", code)
	}
	send() // the old table stays in force
	var evs []struct {
		Cost float64 `json:"cost_usd"`
	}
	s.get("/api/v1/experiments/p/events", &evs)
	if len(evs) != 3 || evs[0].Cost != 3 || evs[1].Cost != 30 || evs[2].Cost != 30 {
		t.Fatalf("costs %+v, want 3, 30, 30", evs)
	}
}

// TestWebConfigBasicAuth serves behind exporter-toolkit's web config: every
// endpoint needs the password.
func TestWebConfigBasicAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web.yml")
	os.WriteFile(cfg, []byte("basic_auth_users:\n  alice: "+string(hash)+"\n"), 0o600)
	addr := freePort(t)
	logs := startProcess(t, binary, "--web.listen-address="+addr, "--storage.path="+filepath.Join(dir, "data"), "--web.config.file="+cfg)
	get := func(path, user, pass string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(30 * time.Second)
	for get("/-/ready", "alice", "s3cret") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not ready\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []string{"/metrics", "/api/v1/experiments", "/-/healthy", "/"} {
		if code := get(p, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", p, code)
		}
		if code := get(p, "alice", "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: %d, want 401", p, code)
		}
		if code := get(p, "alice", "s3cret"); code != http.StatusOK {
			t.Errorf("%s with the password: %d, want 200", p, code)
		}
	}
}

// TestOfflineAnalyzeAndCompare: the offline commands print the numbers the
// API gives, from the data directory of a stopped sidecar.
func TestOfflineAnalyzeAndCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	s := startSidecar(t, dir)
	for k, id := range []string{"ctl", "trt"} {
		s.post("/api/v1/experiments", `{"id":"`+id+`","name":"`+id+`"}`)
		var sb strings.Builder
		for i := range 300 {
			fmt.Fprintf(&sb, `{"event_name":"x","latency_ms":%d,"cost_usd":0.002,"success":%v}`+"\n", 100+(i*37)%200+k*15, i%9 != 0)
		}
		s.post("/api/v1/experiments/"+id+"/events", sb.String())
	}
	apiJSON := func(path string) string {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		json.NewDecoder(resp.Body).Decode(&env)
		return canonical(t, env.Data)
	}
	wantMetrics := apiJSON("/api/v1/experiments/ctl/metrics")
	wantCompare := apiJSON("/api/v1/compare?experiments=ctl,trt&bootstrap_resamples=500&seed=3")
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatal(code)
	}
	run := func(args ...string) string { return runBinary(t, args...) }
	if got := canonical(t, []byte(run("analyze", "--storage.path="+dir, "--experiment=ctl", "--format=json"))); got != wantMetrics {
		t.Errorf("analyze --format=json differs from the API:\n%s\n%s", got, wantMetrics)
	}
	if got := canonical(t, []byte(run("compare", "--storage.path="+dir, "--format=json", "--bootstrap-resamples=500", "--seed=3", "ctl", "trt"))); got != wantCompare {
		t.Errorf("compare --format=json differs from the API:\n%s\n%s", got, wantCompare)
	}
	table := run("compare", "--storage.path="+dir, "ctl", "trt")
	for _, want := range []string{"latency mean (ms)", "success rate", "95% CI", "Welch"} {
		if !strings.Contains(table, want) {
			t.Errorf("compare table lacks %q:\n%s", want, table)
		}
	}
	if out, err := exec.Command(binary, "analyze", "--storage.path="+dir, "--experiment=nope").CombinedOutput(); err == nil || !strings.Contains(string(out), "not found") {
		t.Errorf("analyze of a missing experiment: %v %s", err, out)
	}
}

// canonical re-encodes JSON with sorted keys.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// TestOfflineExportImport: export from a stopped sidecar's data, import
// into another data directory, and the copy analyses the same.
// importedCopy exports experiment id of the data directory dir as JSONL,
// imports it into dir2 as "copy", and checks that all n events came back
// and that the copy analyses as the original does.
func importedCopy(t *testing.T, dir, id, dir2 string, n int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), id+".jsonl")
	runBinary(t, "export", "--storage.path="+dir, "--experiment="+id, "--format=jsonl", "--output="+file)
	if out := runBinary(t, "import", "--storage.path="+dir2, "--experiment=copy", file); !strings.Contains(out, fmt.Sprintf("accepted=%d duplicates=0 rejected=0", n)) {
		t.Fatalf("import: %s", out)
	}
	a := canonical(t, []byte(runBinary(t, "analyze", "--storage.path="+dir, "--experiment="+id, "--format=json")))
	b := canonical(t, []byte(runBinary(t, "analyze", "--storage.path="+dir2, "--experiment=copy", "--format=json")))
	if a != b {
		t.Fatalf("the copy analyses differently:\n%s\n%s", a, b)
	}
}

func TestOfflineExportImport(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir, dir2 := t.TempDir(), t.TempDir()
	s := startSidecar(t, dir)
	s.post("/api/v1/experiments", `{"id":"orig","name":"Orig"}`)
	var sb strings.Builder
	base := time.Now().Add(-time.Minute).UnixMicro()
	for i := range 400 {
		fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","timestamp":%d,"measurements":{"duration":%d},"metadata":{"model":"gpt-4o","tokens":{"prompt":%d,"completion":7},"session_id":"s-%d","response":"r"}}`+"\n",
			base+int64((i*37)%400)*1000, (i%60+1)*1e6, i, i%7)
	}
	s.post("/api/v1/experiments/orig/events", sb.String())
	s.stop(syscall.SIGTERM)

	importedCopy(t, dir, "orig", dir2, 400)
	csvOut := runBinary(t, "export", "--storage.path="+dir, "--experiment=orig", "--format=csv")
	if n := strings.Count(csvOut, "\n"); n != 401 {
		t.Fatalf("CSV has %d lines, want a header and 400 rows", n)
	}
}

// countSamples counts the raw samples of each crucible_event_* metric in a
// TSDB directory, opened read-only.
func countSamples(t *testing.T, dir string) map[string]int {
	t.Helper()
	db, err := tsdb.OpenDBReadOnly(dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	counts := map[string]int{}
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, "crucible_event_.*"))
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			counts[set.At().Labels().Get(model.MetricNameLabel)]++
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}
