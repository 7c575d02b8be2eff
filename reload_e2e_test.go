package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/storage/remote"
)

// countingReceiver is a remote-write 1.0 receiver that counts the samples
// it acknowledges.
func countingReceiver(t *testing.T) (url string, samples *atomic.Int64) {
	samples = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wr, err := remote.DecodeWriteRequest(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ts := range wr.Timeseries {
			samples.Add(int64(len(ts.Samples)))
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/v1/write", samples
}

// SIGHUP and /-/reload read the remote-write configuration again: a
// receiver added gets every sample, one kept sends nothing again, and a
// broken file is refused while the queues go on.
func TestRemoteWriteReload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	urlA, a := countingReceiver(t)
	urlB, b := countingReceiver(t)
	cfg := filepath.Join(dir, "remote-write.yml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("remote_write:\n- url: " + urlA + "\n")
	s := startSidecar(t, filepath.Join(dir, "data"), "--remote-write.config-file="+cfg)
	defer s.stop(syscall.SIGTERM)
	s.post("/api/v1/experiments", `{"id":"rw","name":"RW"}`)
	send := func() {
		var body strings.Builder
		for range 50 {
			body.WriteString(`{"event_name":"llm.request","latency_ms":120,"success":true,"metadata":{"model":"m","tokens":{"prompt":10,"completion":20}}}` + "\n")
		}
		if code, out := s.post("/api/v1/experiments/rw/events", body.String()); code != 200 {
			t.Fatalf("ingest: %d %s", code, out)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (A %d, B %d samples)\n%s", what, a.Load(), b.Load(), s.logs)
			}
		}
	}
	const perBatch = 50 * 4 // latency, two token counts, success (model "m" has no price, so no cost)
	send()
	waitFor("A to have the first batch", func() bool { return a.Load() == perBatch })

	write("remote_write:\n- url: " + urlA + "\n- url: " + urlB + "\n")
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the reload", func() bool { return strings.Contains(s.logs.String(), "reloaded the remote-write configuration") })
	send()
	waitFor("both to have both batches", func() bool { return a.Load() == 2*perBatch && b.Load() == 2*perBatch })

	write("remote_write:\n- url: [broken")
	if code, _ := s.post("/-/reload", ""); code != http.StatusBadRequest {
		t.Fatalf("reload of a broken remote-write file: %d", code)
	}
	send()
	waitFor("both to have the third batch", func() bool { return a.Load() == 3*perBatch && b.Load() == 3*perBatch })
	time.Sleep(300 * time.Millisecond) // a few passes: nothing is sent twice
	if a.Load() != 3*perBatch || b.Load() != 3*perBatch {
		t.Fatalf("samples sent again: A %d, B %d, want %d each", a.Load(), b.Load(), 3*perBatch)
	}
}
