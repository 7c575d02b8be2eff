package experiment

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// spanEvent is an event as the OTLP mapping makes it: its event_id is its
// span key.
func spanEvent(t *testing.T, arm, i int, extra string) (*event.Event, event.SpanKey) {
	t.Helper()
	k := event.NewSpanKey([16]byte{byte(arm), byte(i)}, [8]byte{9, byte(i)})
	e, err := event.Parse([]byte(fmt.Sprintf(`{"event_id":%q,"event_name":"gen_ai.chat","latency_ms":%d,"metadata":{"sample_id":"q%d"}%s}`,
		k.EventID(), 100+i, i, extra)), time.Now(), pricing.Default())
	if err != nil {
		t.Fatal(err)
	}
	return e, k
}

// An evaluation scores its span's event whether it arrives before the span
// or after it, and across restarts: in the analysis, the paired comparison,
// /events and the export; the data directory read offline says the same.
func TestEvaluationsJoinTheirEvents(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m := newManager(t, dir, &clock{time.Now()})
	create(t, m, `{"id":"base","name":"Base"}`)
	create(t, m, `{"id":"cand","name":"Cand"}`)
	const n = 12
	addEval := func(m *Manager, k event.SpanKey, name string, v float64) {
		t.Helper()
		rej, err := m.AddEvaluations(ctx, []evalstore.Evaluation{{Span: k, Name: name, Value: v}})
		if err != nil || len(rej) > 0 {
			t.Fatalf("AddEvaluations: %v %v", rej, err)
		}
	}
	for arm, id := range []string{"base", "cand"} {
		var evs []*event.Event
		for i := range n {
			// The first half carries a score of its own, which an
			// evaluation of the same name replaces.
			extra := ""
			if i < n/2 {
				extra = `,"scores":{"own":1,"judge":0}`
			}
			e, k := spanEvent(t, arm, i, extra)
			evs = append(evs, e)
			if i%2 == 0 { // before the span
				addEval(m, k, "judge", float64(arm)*0.5+float64(i%3)*0.1)
			}
		}
		if _, err := m.Ingest(id, evs, time.Now()); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i += 2 { // after it
			_, k := spanEvent(t, arm, i, "")
			addEval(m, k, "judge", float64(arm)*0.5+float64(i%3)*0.1)
		}
	}
	check := func(t *testing.T, name string, src interface {
		Analyze(context.Context, string, Filter) (analysis.Report, error)
		Compare(context.Context, []string, Filter, analysis.CompareOptions) (CompareReport, error)
		Export(context.Context, io.Writer, string, ExportOptions) (int64, error)
	}) {
		t.Run(name, func(t *testing.T) {
			r, err := src.Analyze(ctx, "cand", Filter{})
			if err != nil {
				t.Fatal(err)
			}
			j := r.Scores["judge"]
			if j.Count != n || r.Scores["own"].Count != n/2 {
				t.Fatalf("scores %+v, want judge on all %d events and own on %d", r.Scores, n, n/2)
			}
			// judge = 0.5 + (i%3)/10 in the treatment: mean 0.6.
			if d := float64(j.Mean) - 0.6; d > 1e-12 || d < -1e-12 {
				t.Fatalf("judge mean %v, want 0.6", j.Mean)
			}
			c, err := src.Compare(ctx, []string{"base", "cand"}, Filter{}, analysis.CompareOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p := c.Comparison["cand"].Paired
			if p.NPairs != n || p.Scores["judge"].N != n || p.Scores["judge"].Improved != n {
				t.Fatalf("paired %+v, want %d pairs, every one improved on judge", p, n)
			}
			var buf bytes.Buffer
			if _, err := src.Export(ctx, &buf, "cand", ExportOptions{Format: "jsonl"}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != n {
				t.Fatalf("%d exported events", len(lines))
			}
			for _, l := range lines {
				var e struct {
					Scores map[string]float64 `json:"scores"`
				}
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatal(err)
				}
				if _, ok := e.Scores["judge"]; !ok {
					t.Fatalf("exported event without its evaluation: %s", l)
				}
			}
			var csv bytes.Buffer
			if _, err := src.Export(ctx, &csv, "cand", ExportOptions{Format: "csv"}); err != nil {
				t.Fatal(err)
			}
			if head, _, _ := strings.Cut(csv.String(), "\n"); !strings.Contains(head, "score_judge") || !strings.Contains(head, "score_own") {
				t.Fatalf("CSV header %q lacks the score columns", head)
			}
		})
	}
	check(t, "live", m)
	evs, err := m.Events(ctx, "cand", Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(evs[n-1]), `"judge":`) {
		t.Fatalf("/events without the evaluation: %s", evs[n-1])
	}
	m.Close()
	check(t, "offline", NewOffline(dir))
	again := newManager(t, dir, &clock{time.Now()})
	check(t, "after a restart", again)
	// An archive carries its events' evaluations: unpacked, it is a data
	// directory that says the same.
	for _, id := range []string{"base", "cand"} {
		if _, err := again.Archive(id); err != nil {
			t.Fatal(err)
		}
	}
	unpacked := unpackArchive(t, ArchivePath(dir, "cand"))
	r, err := NewOffline(unpacked).Analyze(ctx, "cand", Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Scores["judge"].Count != n {
		t.Fatalf("unpacked archive: scores %+v, want judge on all %d events", r.Scores, n)
	}
	check(t, "archived", again)
}
