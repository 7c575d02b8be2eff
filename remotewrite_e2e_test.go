package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const installVictoriaMetrics = "apt-get update && apt-get install -y victoria-metrics"

// receiverKind starts a real remote-write receiver on addr over dir, again
// on the same directory after a stop.
type receiverKind struct {
	name      string
	tool      string
	install   string
	writePath string
	start     func(t *testing.T, tool, dir, addr string) *receiverProcess
	// read is how --prometheus.read=auto reads it, as the notes say.
	read string
}

var receiverKinds = []receiverKind{
	{
		name: "prometheus", tool: "prometheus", install: installPrometheus, writePath: "/api/v1/write", read: "with remote read",
		start: func(t *testing.T, tool, dir, addr string) *receiverProcess {
			// Raw samples arrive out of order, and again after a restart:
			// the out-of-order window takes both.
			cfg := filepath.Join(dir, "prometheus.yml")
			if err := os.WriteFile(cfg, []byte("storage:\n  tsdb:\n    out_of_order_time_window: 1d\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return startReceiver(t, tool, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
				"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
		},
	},
	{
		name: "victoria-metrics", tool: "victoria-metrics", install: installVictoriaMetrics, writePath: "/api/v1/write", read: "through the query API",
		start: func(t *testing.T, tool, dir, addr string) *receiverProcess {
			// A resent sample is one sample only with deduplication; the
			// response cache and the latency offset would hide fresh data.
			return startReceiver(t, tool, "-storageDataPath="+filepath.Join(dir, "data"), "-httpListenAddr="+addr,
				"-dedup.minScrapeInterval=1ms", "-search.disableCache", "-search.latencyOffset=0s", "-retentionPeriod=10y")
		},
	},
}

type receiverProcess struct {
	t    *testing.T
	cmd  *os.Process
	done chan struct{}
	logs *syncBuffer
}

func startReceiver(t *testing.T, tool string, args ...string) *receiverProcess {
	t.Helper()
	logs := &syncBuffer{}
	p := &receiverProcess{t: t, logs: logs, done: make(chan struct{})}
	cmd := exec.Command(tool, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd.Process
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *receiverProcess) stop() {
	p.cmd.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Kill()
		<-p.done
	}
}

// promQuery evaluates an instant query against a Prometheus-compatible API.
func promQuery(base, q string) (model.Vector, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", q, r.Error)
	}
	var d struct {
		Result model.Vector `json:"result"`
	}
	err = json.Unmarshal(r.Data, &d)
	return d.Result, err
}

// scalarOf sums a vector (0 when empty).
func scalarOf(v model.Vector) float64 {
	var s float64
	for _, x := range v {
		s += float64(x.Value)
	}
	return s
}

// remoteWriteMetric reads one remote-write metric of a sidecar.
func remoteWriteMetric(t *testing.T, s *sidecar, name, result string) float64 {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		match := result == ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "result" && l.GetValue() == result {
				match = true
			}
		}
		if !match {
			continue
		}
		if c := m.GetCounter(); c != nil {
			sum += c.GetValue()
		} else {
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// fleetEvents are the events of one arm: both arms answer the same
// samples, a quarter of them at one millisecond in both pods.
func fleetEvents(arm string, n int, base time.Time) []string {
	out := make([]string, n)
	for i := range out {
		ts := base.Add(time.Duration(i/2) * time.Millisecond).UnixMicro() // pairs share a millisecond
		lat := 200 + (i*37)%400
		ok := i%9 != 0
		judge := float64((i*13)%10) / 10
		if arm == "trt" {
			lat -= 15
			// Decimal values: VictoriaMetrics keeps values as decimals,
			// and min(1, judge+0.1) = 0.30000000000000004 came back 0.3.
			judge = float64((i*13+1)%10) / 10
			ok = i%11 != 0
		}
		model := []string{"gpt-4o-mini", "claude-sonnet-4-5"}[i%2]
		out[i] = fmt.Sprintf(`{"event_name":"llm.request","timestamp":%d,"latency_ms":%d,"success":%t,`+
			`"metadata":{"sample_id":"s%d","model":%q,"provider":"p","tokens":{"prompt":%d,"completion":%d}},"scores":{"judge":%g,"exact":%d}}`,
			ts, lat, ok, i, model, 100+i%17, 20+i%5, judge, i%2)
	}
	return out
}

// TestRemoteWriteFleet runs two sidecars — two pods — that write halves of
// a control and a treatment experiment to one real receiver. The receiver
// is down for a while and one sidecar restarts meanwhile; afterwards the
// receiver holds every sample the sidecars hold.
func TestRemoteWriteFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two built sidecars and a receiver: slow; runs without -short")
	}
	for _, kind := range receiverKinds {
		t.Run(kind.name, func(t *testing.T) {
			tool := needTool(t, kind.tool, kind.install)
			dir := t.TempDir()
			raddr := freePort(t)
			receiver := kind.start(t, tool, dir, raddr)
			rurl := "http://" + raddr
			cfg := filepath.Join(dir, "remote-write.yml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("remote_write:\n- url: %s%s\n  queue_config: {min_backoff: 50ms, max_backoff: 500ms}\n", rurl, kind.writePath)), 0o644); err != nil {
				t.Fatal(err)
			}
			args := func(pod string) []string {
				return []string{"--remote-write.config-file=" + cfg, "--remote-write.external-label=pod=" + pod}
			}
			pods := []string{"crucible-0", "crucible-1"}
			sidecars := make([]*sidecar, 2)
			for i, pod := range pods {
				sidecars[i] = startSidecar(t, filepath.Join(dir, pod), args(pod)...)
				t.Cleanup(func() { sidecars[i].stop(syscall.SIGTERM) })
			}
			const n = 1200
			base := time.Now().Add(-40 * time.Minute).Truncate(time.Second)
			arms := map[string][]string{"ctl": fleetEvents("ctl", n, base), "trt": fleetEvents("trt", n, base)}
			for _, s := range sidecars {
				s.post("/api/v1/experiments", `{"id":"ctl","name":"Control","condition":"control"}`)
				s.post("/api/v1/experiments", `{"id":"trt","name":"Treatment","condition":"treatment"}`)
			}
			// Event i goes to pod i%2; the first 60% before the outage.
			send := func(from, to int) {
				for id, evs := range arms {
					var body [2]strings.Builder
					for i := from; i < to; i++ {
						body[i%2].WriteString(evs[i] + "\n")
					}
					for p, s := range sidecars {
						if code, resp := s.post("/api/v1/experiments/"+id+"/events", body[p].String()); code != 200 {
							t.Fatalf("ingest: %d %s", code, resp)
						}
					}
				}
			}
			caughtUp := func() {
				t.Helper()
				deadline := time.Now().Add(90 * time.Second)
				for _, s := range sidecars {
					for remoteWriteMetric(t, s, "crucible_remote_write_pending_samples", "") != 0 ||
						remoteWriteMetric(t, s, "crucible_remote_write_samples_total", "sent") <= 0 {
						if time.Now().After(deadline) {
							t.Fatalf("remote write did not catch up\n%s\nreceiver:\n%s", s.logs, receiver.logs)
						}
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
			send(0, n*6/10)
			caughtUp()

			receiver.stop()
			send(n*6/10, n)
			deadline := time.Now().Add(30 * time.Second)
			for remoteWriteMetric(t, sidecars[1], "crucible_remote_write_samples_total", "retried") <= 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no retries while the receiver is down\n%s", sidecars[1].logs)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if code := sidecars[1].stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("sidecar exit %d\n%s", code, sidecars[1].logs)
			}
			sidecars[1] = startSidecar(t, filepath.Join(dir, pods[1]), args(pods[1])...)
			receiver = kind.start(t, tool, dir, raddr)
			caughtUp()

			// Every sample the sidecars' TSDBs hold is in the receiver, once.
			metrics := []string{"crucible_event_latency_seconds", "crucible_event_cost_usd", "crucible_event_prompt_tokens",
				"crucible_event_completion_tokens", "crucible_event_success", "crucible_event_score"}
			counts := func(base string) (map[string]float64, error) {
				out := map[string]float64{}
				for _, m := range metrics {
					v, err := promQuery(base, `sum by (experiment_id, score) (count_over_time(`+m+`[3h]))`)
					if err != nil {
						return nil, err
					}
					for _, x := range v {
						out[m+x.Metric.String()] += float64(x.Value)
					}
				}
				return out, nil
			}
			local := map[string]float64{}
			for _, s := range sidecars {
				c, err := counts(s.url + "/prometheus")
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range c {
					local[k] += v
				}
			}
			var remote map[string]float64
			deadline = time.Now().Add(30 * time.Second)
			for {
				var err error
				remote, err = counts(rurl)
				if err == nil && fmt.Sprint(remote) == fmt.Sprint(local) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("receiver holds %v (%v), the sidecars %v\n%s", remote, err, local, receiver.logs)
				}
				time.Sleep(250 * time.Millisecond)
			}
			if got := local[`crucible_event_latency_seconds{experiment_id="ctl"}`]; got != n {
				t.Fatalf("latency samples of ctl: %v, want %d (%v)", got, n, local)
			}
			pods0, err := promQuery(rurl, `count by (pod) (count_over_time(crucible_event_success[3h]))`)
			if err != nil || len(pods0) != 2 {
				t.Fatalf("series by pod: %v %v", pods0, err)
			}
			t.Logf("%s holds the samples the sidecars hold: %v", kind.name, remote)

			// The fleet's comparison from the receiver equals the local one
			// over one data directory holding every event of both pods.
			merged := filepath.Join(dir, "merged")
			for i, s := range sidecars {
				if code := s.stop(syscall.SIGTERM); code != 0 {
					t.Fatalf("sidecar exit %d\n%s", code, s.logs)
				}
				for _, id := range []string{"ctl", "trt"} {
					file := filepath.Join(dir, fmt.Sprintf("%s-%d.jsonl", id, i))
					runBinary(t, "export", "--storage.path="+filepath.Join(dir, pods[i]), "--experiment="+id, "--format=jsonl", "--output="+file)
					if out := runBinary(t, "import", "--storage.path="+merged, "--experiment="+id, file); !strings.Contains(out, fmt.Sprintf("accepted=%d duplicates=0 rejected=0", n/2)) {
						t.Fatalf("import: %s", out)
					}
				}
			}
			var offline, fleet map[string]any
			json.Unmarshal([]byte(runBinary(t, "compare", "--storage.path="+merged, "--format=json", "ctl", "trt")), &offline)
			out := runBinary(t, "compare", "--prometheus.url="+rurl, "--format=json", "ctl", "trt")
			if err := json.Unmarshal([]byte(out), &fleet); err != nil {
				t.Fatalf("fleet compare: %v\n%s", err, out)
			}
			if notes, _ := fleet["notes"].([]any); len(notes) == 0 || !strings.Contains(fmt.Sprint(notes[0]), kind.read) {
				t.Fatalf("the fleet answer does not say how it read the samples (%s) and what samples cannot carry: %s", kind.read, out)
			}
			sameNumbers(t, "compare", offline, fleet, map[string]bool{"paired": true, "notes": true})
			// Every way of reading the receiver gives the same answer.
			if kind.read == "with remote read" {
				json.Unmarshal([]byte(runBinary(t, "compare", "--prometheus.url="+rurl, "--prometheus.read=query", "--format=json", "ctl", "trt")), &fleet)
				sameNumbers(t, "compare through the query API", offline, fleet, map[string]bool{"paired": true, "notes": true})
			}
			table := runBinary(t, "compare", "--prometheus.url="+rurl, "ctl", "trt")
			if !strings.Contains(table, "paired analysis needs sample_id") {
				t.Fatalf("the table does not say that pairing needs the event logs:\n%s", table)
			}
		})
	}
}

// sameNumbers compares two JSON documents: numbers to 1e-9 relative,
// everything else exactly, keys in skip ignored.
func sameNumbers(t *testing.T, path string, a, b any, skip map[string]bool) {
	t.Helper()
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			t.Errorf("%s: %v vs %v", path, a, b)
			return
		}
		for k := range av {
			if !skip[k] {
				sameNumbers(t, path+"."+k, av[k], bv[k], skip)
			}
		}
		for k := range bv {
			if _, ok := av[k]; !ok && !skip[k] {
				t.Errorf("%s.%s: only in the second", path, k)
			}
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			t.Errorf("%s: %v vs %v", path, a, b)
			return
		}
		for i := range av {
			sameNumbers(t, fmt.Sprintf("%s[%d]", path, i), av[i], bv[i], skip)
		}
	case float64:
		bv, ok := b.(float64)
		if !ok || math.Abs(av-bv) > 1e-9*math.Max(math.Abs(av), math.Abs(bv)) {
			t.Errorf("%s: %v vs %v", path, a, b)
		}
	default:
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: %v vs %v", path, a, b)
		}
	}
}

// A bad remote-write configuration or external label stops the sidecar
// at start-up with exit 2 and the reason.
func TestRemoteWriteBadConfiguration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "remote-write.yml")
	if err := os.WriteFile(bad, []byte("remote_write:\n- url: http://r/api/v1/write\n  queue_config: {capacity: 100}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--remote-write.config-file=" + bad}, "queue_config.capacity is not used"},
		{[]string{"--remote-write.config-file=" + filepath.Join(dir, "missing.yml")}, "no such file"},
		{[]string{"--remote-write.external-label=model=x"}, "samples carry a label of that name"},
		{[]string{"--remote-write.external-label=pod"}, "want NAME=VALUE"},
	} {
		out, err := exec.Command(binary, append([]string{"--storage.path=" + filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:0"}, tc.args...)...).CombinedOutput()
		if code := exitCode(err); code != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %d, want 2 with %q\n%s", tc.args, code, tc.want, out)
		}
	}
}
