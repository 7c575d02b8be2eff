package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPromQLWithPromtool runs Debian's promtool query against the built
// sidecar's /prometheus: it speaks Prometheus' HTTP API as Prometheus does.
func TestPromQLWithPromtool(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	promtool := needTool(t, "promtool", installPrometheus)
	s := startSidecar(t, t.TempDir())
	defer s.stop(syscall.SIGTERM)

	// 30 events, 20 with a latency; a second experiment the queries must
	// tell apart.
	const withLatency = 20
	var sb strings.Builder
	for i := range 30 {
		if i < withLatency {
			fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","latency_ms":%d,"success":true,"metadata":{"model":"gpt-4o"}}`+"\n", 100+i)
		} else {
			sb.WriteString(`{"event_name":"req_llm.request.stop","success":false,"metadata":{"model":"gpt-4o"}}` + "\n")
		}
	}
	for _, id := range []string{"x", "y"} {
		if code, body := s.post("/api/v1/experiments", fmt.Sprintf(`{"id":%q,"name":%q}`, id, id)); code != 201 {
			t.Fatalf("create %s: %d %s", id, code, body)
		}
		if code, body := s.post("/api/v1/experiments/"+id+"/events", sb.String()); code != 200 {
			t.Fatalf("ingest %s: %d %s", id, code, body)
		}
	}
	server := s.url + "/prometheus"
	promtoolQuery := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(promtool, append([]string{"query"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool query %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	count := `sum(count_over_time(crucible_event_latency_seconds{experiment_id="x"}[1h]))`

	var vec []struct {
		Value [2]any `json:"value"`
	}
	out := promtoolQuery("instant", "-o", "json", server, count)
	if err := json.Unmarshal([]byte(out), &vec); err != nil || len(vec) != 1 || vec[0].Value[1] != strconv.Itoa(withLatency) {
		t.Fatalf("instant: %v\n%s", err, out)
	}

	now := time.Now()
	var mat []struct {
		Values [][2]any `json:"values"`
	}
	out = promtoolQuery("range", "-o", "json", "--start="+now.Add(-time.Minute).Format(time.RFC3339), "--end="+strconv.FormatInt(now.Add(time.Minute).Unix(), 10), "--step=30s", server, count)
	if err := json.Unmarshal([]byte(out), &mat); err != nil || len(mat) != 1 || len(mat[0].Values) == 0 {
		t.Fatalf("range: %v\n%s", err, out)
	}
	if last := mat[0].Values[len(mat[0].Values)-1][1]; last != strconv.Itoa(withLatency) {
		t.Fatalf("range ends at %v, want %d\n%s", last, withLatency, out)
	}

	out = promtoolQuery("series", `--match=crucible_event_latency_seconds{experiment_id="x"}`, server)
	// Events of one millisecond are in series of their own slot label.
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, `__name__="crucible_event_latency_seconds"`) || !strings.Contains(l, `experiment_id="x"`) ||
			!strings.Contains(l, `model="gpt-4o"`) || !strings.Contains(l, `event="req_llm.request.stop"`) {
			t.Fatalf("series:\n%s", out)
		}
	}

	out = promtoolQuery("labels", server, "experiment_id")
	if got := strings.Fields(out); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("label values of experiment_id: %q", got)
	}
	out = promtoolQuery("labels", `--match={experiment_id="x"}`, server, "__name__")
	if got := strings.Fields(out); !slices.Contains(got, "crucible_event_latency_seconds") || !slices.Contains(got, "crucible_event_success") {
		t.Fatalf("metric names of x: %q", got)
	}

	// A bad query is Prometheus' bad_data.
	if out, err := exec.Command(promtool, "query", "instant", server, "sum((").CombinedOutput(); err == nil || !strings.Contains(string(out), "bad_data") {
		t.Fatalf("bad query: %v\n%s", err, out)
	}
}
