package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScoresEndToEnd: quality scores sent to the built sidecar are shown
// with the events, summarised on /metrics (which promtool accepts), stored
// as one TSDB sample each, exported as CSV columns and JSONL that imports
// back whole; an event with a bad score is refused with its reason and
// stores nothing.
func TestScoresEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir, dir2 := t.TempDir(), t.TempDir()
	s := startSidecar(t, dir)
	s.post("/api/v1/experiments", `{"id":"evalA","name":"Eval A","condition":"control"}`)
	var sb strings.Builder
	base := time.Now().Add(-time.Minute).UnixMicro()
	judge := 0.0
	for i := range 60 {
		j := float64(i%10) / 10
		judge += j
		fmt.Fprintf(&sb, `{"event_name":"eval.sample","timestamp":%d,"latency_ms":%d,"success":true,"scores":{"exact_match":%v,"judge.helpfulness":%v},"metadata":{"model":"gpt-4o","sample_id":"q-%d"}}`+"\n",
			base+int64(i)*1000, 100+i, i%2 == 0, j, i%20)
	}
	sb.WriteString(`{"event_name":"eval.sample","scores":{"judge helpfulness":1}}` + "\n")
	sb.WriteString(`{"event_name":"eval.sample","scores":{"judge":"good"}}` + "\n")
	code, body := s.post("/api/v1/experiments/evalA/events", sb.String())
	if code != http.StatusOK || !strings.Contains(body, `"accepted":60`) ||
		!strings.Contains(body, `invalid name \"judge helpfulness\"`) || !strings.Contains(body, `field \"scores.judge\": cannot use a string as a number or a boolean`) {
		t.Fatalf("ingest: %d %s", code, body)
	}

	var events []struct {
		Scores map[string]float64 `json:"scores"`
	}
	s.get("/api/v1/experiments/evalA/events?limit=2", &events)
	if len(events) != 2 || events[0].Scores["exact_match"] != 1 || events[1].Scores["judge.helpfulness"] != 0.1 {
		t.Fatalf("events: %+v", events)
	}

	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`crucible_score_count{condition="control",experiment="Eval A",experiment_id="evalA",score="exact_match"} 60`,
		`crucible_score_sum{condition="control",experiment="Eval A",experiment_id="evalA",score="exact_match"} 30`,
		fmt.Sprintf(`crucible_score_sum{condition="control",experiment="Eval A",experiment_id="evalA",score="judge.helpfulness"} %v`, judge),
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	promtool := needTool(t, "promtool", installPrometheus)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(metrics))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	s.stop(syscall.SIGTERM)

	if n := countSamples(t, filepath.Join(dir, "experiments", "evalA", "tsdb"))["crucible_event_score"]; n != 120 {
		t.Fatalf("%d crucible_event_score samples, want 120 (two per event)", n)
	}
	csvOut := runBinary(t, "export", "--storage.path="+dir, "--experiment=evalA", "--format=csv")
	header := strings.SplitN(csvOut, "\n", 2)[0]
	if !strings.Contains(header, ",score_exact_match,score_judge.helpfulness,") {
		t.Fatalf("CSV header %s", header)
	}
	importedCopy(t, dir, "evalA", dir2, 60)
	a := runBinary(t, "export", "--storage.path="+dir, "--experiment=evalA", "--format=jsonl")
	b := runBinary(t, "export", "--storage.path="+dir2, "--experiment=copy", "--format=jsonl")
	if strings.Count(a, `"scores":{"exact_match":`) != 60 || strings.Count(b, `"scores":{"exact_match":`) != 60 {
		t.Fatalf("scores lost in the import: %d then %d events with scores", strings.Count(a, `"scores":{`), strings.Count(b, `"scores":{`))
	}
}
