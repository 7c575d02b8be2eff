package loadgen

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/crucible-telemetry/crucible-telemetry/otlp"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// OTLPBatch's spans are GenAI spans that map to events with every number
// a JSON batch's events have.
func TestOTLPBatchIsRealistic(t *testing.T) {
	now := time.Now()
	body, err := OTLPBatch(rand.New(rand.NewPCG(1, 2)), 1000, now, "x")
	if err != nil {
		t.Fatal(err)
	}
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(body); err != nil {
		t.Fatal(err)
	}
	b := otlp.Traces(req.Traces(), "", now, pricing.Default())
	if len(b.Events) != 1000 || len(b.Rejected) > 0 {
		t.Fatalf("%d events, rejected %v", len(b.Events), b.Rejected)
	}
	ids := map[string]bool{}
	failures := 0
	for _, e := range b.Events {
		if e.ExperimentID != "x" || !e.LatencyMs.Valid || !e.CostUSD.Valid || e.Tokens == nil || !e.SessionID.Valid || !e.SampleID.Valid {
			t.Fatalf("event lacks realistic fields: %s", e.AppendJSON(nil))
		}
		if !e.Success.V {
			failures++
		}
		ids[e.EventID] = true
	}
	if failures == 0 || failures > 100 || len(ids) != 1000 {
		t.Fatalf("%d failures, %d distinct ids in 1000 events", failures, len(ids))
	}
}

func TestRunOTLP(t *testing.T) {
	var spans atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/traces" {
			return // the experiment's creation
		}
		req := ptraceotlp.NewExportRequest()
		if r.Header.Get("Content-Type") != "application/x-protobuf" || req.UnmarshalProto(b) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		spans.Add(int64(req.Traces().SpanCount()))
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	defer srv.Close()
	rep, err := Run(context.Background(), Config{Target: srv.URL, Experiment: "x", Events: 2500, Connections: 2, BatchSize: 1000, Protocol: "otlp"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 2500 || spans.Load() != 2500 {
		t.Fatalf("report %+v, server saw %d spans", rep, spans.Load())
	}
}

// A batch copied from the template decodes to spans with new ids and times
// moved by the time passed, the rest as the template's.
func TestOTLPTemplate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	then := time.Now().Add(-time.Hour)
	tmpl, err := newOTLPTemplate(rng, 100, then, "x")
	if err != nil {
		t.Fatal(err)
	}
	orig := ptraceotlp.NewExportRequest()
	if err := orig.UnmarshalProto(tmpl.body); err != nil {
		t.Fatal(err)
	}
	now := then.Add(time.Hour)
	req := ptraceotlp.NewExportRequest()
	if err := req.UnmarshalProto(tmpl.batch(nil, rng, now)); err != nil {
		t.Fatal(err)
	}
	a := orig.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	b := req.Traces().ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	if a.Len() != 100 || b.Len() != 100 {
		t.Fatalf("%d and %d spans", a.Len(), b.Len())
	}
	for i := range a.Len() {
		x, y := a.At(i), b.At(i)
		if x.TraceID() == y.TraceID() || x.SpanID() == y.SpanID() || y.SpanID().IsEmpty() {
			t.Fatalf("span %d kept its ids", i)
		}
		if y.StartTimestamp().AsTime().Sub(x.StartTimestamp().AsTime()) != time.Hour || y.EndTimestamp()-y.StartTimestamp() != x.EndTimestamp()-x.StartTimestamp() {
			t.Fatalf("span %d: times %v → %v", i, x.StartTimestamp(), y.StartTimestamp())
		}
		if x.Name() != y.Name() || x.Attributes().Len() != y.Attributes().Len() {
			t.Fatalf("span %d changed", i)
		}
	}
}
