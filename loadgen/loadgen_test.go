package loadgen

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

func TestBatchIsRealistic(t *testing.T) {
	now := time.Now()
	body := Batch(nil, rand.New(rand.NewPCG(1, 2)), 1000, now.UnixMicro())
	lines := bytes.Split(bytes.TrimSpace(body), []byte("\n"))
	if len(lines) != 1000 {
		t.Fatalf("%d lines", len(lines))
	}
	if avg := len(body) / len(lines); avg < 350 || avg > 600 {
		t.Fatalf("average event is %d bytes, want about 450", avg)
	}
	failures := 0
	for _, l := range lines {
		e, err := event.Parse(l, now, pricing.Default())
		if err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if !e.LatencyMs.Valid || !e.CostUSD.Valid || e.Tokens == nil || !e.SessionID.Valid || !e.Success.Valid {
			t.Fatalf("event lacks realistic fields: %s", l)
		}
		if !e.Success.V {
			failures++
		}
	}
	if failures == 0 || failures > 100 {
		t.Fatalf("%d failures in 1000 events", failures)
	}
}

func TestBatchWithScores(t *testing.T) {
	now := time.Now()
	for _, n := range []int{0, 1, 2, 4, 9} {
		body := BatchWith(nil, rand.New(rand.NewPCG(1, 2)), 200, now.UnixMicro(), BatchOptions{Scores: n, Samples: 3})
		for _, l := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
			e, err := event.Parse(l, now, pricing.Default())
			if err != nil {
				t.Fatalf("%d scores: %v: %s", n, err, l)
			}
			if want := min(n, 4); len(e.Scores) != want {
				t.Fatalf("%d scores asked, %d given: %s", n, len(e.Scores), l)
			}
			if s := e.SampleID.V; s != "q-0" && s != "q-1" && s != "q-2" {
				t.Fatalf("sample_id %q of 3", s)
			}
		}
	}
}

// sidecar is a stand-in for the sidecar's API that counts the events it
// stores; refuse, when set, answers a request 429 with Retry-After instead.
func sidecar(events *atomic.Int64, refuse func() bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/experiments":
			w.WriteHeader(http.StatusCreated)
		case strings.HasSuffix(r.URL.Path, "/events"):
			b, _ := io.ReadAll(r.Body)
			if refuse != nil && refuse() {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			n := bytes.Count(b, []byte("\n"))
			events.Add(int64(n))
			io.WriteString(w, `{"status":"success","data":{"accepted":`+strconv.Itoa(n)+`,"duplicates":0}}`)
		case r.URL.Path == "/metrics":
			io.WriteString(w, "process_resident_memory_bytes 1.048576e+07\n")
		}
	}))
}

func TestRunCountsAcceptedEvents(t *testing.T) {
	var events atomic.Int64
	srv := sidecar(&events, nil)
	defer srv.Close()
	rep, err := Run(context.Background(), Config{Target: srv.URL, Experiment: "x", Events: 2500, Connections: 2, BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 2500 || events.Load() != 2500 || rep.SidecarRSS != 10<<20 || rep.P50 <= 0 {
		t.Fatalf("report %+v, server saw %d", rep, events.Load())
	}
}

// TestRunClosesItsConnections: Run owns its transport, so it closes the
// keep-alive connections it opened instead of leaving their goroutines (and
// the server's) behind.
func TestRunClosesItsConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if strings.HasSuffix(r.URL.Path, "/events") {
			io.WriteString(w, `{"status":"success","data":{"accepted":10,"duplicates":0}}`)
		}
	}))
	defer srv.Close()
	before := goleak.IgnoreCurrent() // the server's accept loop
	if _, err := Run(context.Background(), Config{Target: srv.URL, Experiment: "x", Events: 40, Connections: 4, BatchSize: 10}); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}

// A 429 with Retry-After is waited out and the same batch sent again: it
// counts as throttled, not as an error, and no event is lost or doubled.
func TestRunHonoursRetryAfter(t *testing.T) {
	var events, refusals atomic.Int64
	srv := sidecar(&events, func() bool { return refusals.Add(1) <= 3 })
	defer srv.Close()
	rep, err := Run(context.Background(), Config{Target: srv.URL, Experiment: "x", Events: 3000, Connections: 1, BatchSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 3000 || events.Load() != 3000 || rep.Throttled != 3 || rep.Errors != 0 {
		t.Fatalf("report %+v, server stored %d", rep, events.Load())
	}
}
