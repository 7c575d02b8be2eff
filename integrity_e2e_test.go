package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second sidecar or an import on a data directory in use exits with an
// error naming the lock and its holder, and the first one's data is whole.
func TestSecondProcessOnADataDirectoryIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	a := startSidecar(t, dir)
	a.post("/api/v1/experiments", `{"id":"shared","name":"Shared"}`)
	if code, body := a.post("/api/v1/experiments/shared/events", `{"event_name":"x","latency_ms":1}`+"\n"+`{"event_name":"x","latency_ms":2}`); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	lock := filepath.Join(dir, "lock")
	holder := fmt.Sprintf("pid %d", a.cmd.Process.Pid)
	input := filepath.Join(t.TempDir(), "more.jsonl")
	if err := os.WriteFile(input, []byte(`{"event_name":"x","latency_ms":3}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"serve", "--web.listen-address=" + freePort(t), "--storage.path=" + dir},
		{"import", "--storage.path=" + dir, "--experiment=shared", input},
	} {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(binary, args...)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatal("the second process did not exit")
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			for _, want := range []string{lock, holder} {
				if !strings.Contains(string(out), want) {
					t.Fatalf("output does not name %q:\n%s", want, out)
				}
			}
		})
	}
	var rec struct {
		EventsStored int `json:"events_stored"`
	}
	a.get("/api/v1/experiments/shared", &rec)
	if rec.EventsStored != 2 {
		t.Fatalf("events stored %d, want 2", rec.EventsStored)
	}
	a.stop(syscall.SIGTERM)
	b := startSidecar(t, dir)
	b.get("/api/v1/experiments/shared", &rec)
	if rec.EventsStored != 2 {
		t.Fatalf("after restart: events stored %d, want 2", rec.EventsStored)
	}
}

// An export spanning more than the out-of-order window imports back whole,
// and so does one batch of a live client spanning it in time order.
func TestExportSpanningMoreThanTheWindowImportsWhole(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir, dir2 := t.TempDir(), t.TempDir()
	s := startSidecar(t, dir)
	s.post("/api/v1/experiments", `{"id":"long","name":"Long"}`)
	var sb strings.Builder
	base := time.Now().Add(-time.Hour).UnixMicro()
	for i := range 900 { // one event a second for 15 minutes; the window is 10
		fmt.Fprintf(&sb, `{"event_name":"req_llm.request.stop","timestamp":%d,"latency_ms":%d,"success":%t}`+"\n", base+int64(i)*1e6, i%97+1, i%9 != 0)
	}
	if code, body := s.post("/api/v1/experiments/long/events", sb.String()); code != 200 || !strings.Contains(body, `"accepted":900`) {
		t.Fatalf("one batch over 15 minutes: %d %s", code, body)
	}
	s.stop(syscall.SIGTERM)

	importedCopy(t, dir, "long", dir2, 900)
	if n := countSamples(t, filepath.Join(dir2, "experiments", "copy", "tsdb"))["crucible_event_latency_seconds"]; n != 900 {
		t.Fatalf("the copy's TSDB holds %d latency samples, want 900", n)
	}
}
