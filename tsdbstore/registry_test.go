package tsdbstore

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// By default an experiment shows a handful of TSDB health series, not the
// TSDB's hundred; DetailedTSDBMetrics shows them all. Neither shows the
// ones promtool rejects.
func TestTSDBMetricsCompactByDefault(t *testing.T) {
	for _, tc := range []struct {
		name     string
		detailed bool
	}{{"compact", false}, {"detailed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			opts := testOptions(t)
			opts.Registerer, opts.DetailedTSDBMetrics = reg, tc.detailed
			s := openStore(t, t.TempDir(), opts)
			defer s.Close()
			// The TSDB's vectors show once samples went in.
			mustAppend(t, s, []*event.Event{llmEvent(time.Now().UnixMicro(), "m", 1)})
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, mf := range mfs {
				if strings.HasPrefix(mf.GetName(), "prometheus_tsdb_") {
					names = append(names, mf.GetName())
				}
			}
			for bad := range lintFailing {
				if slices.Contains(names, bad) {
					t.Fatalf("%s is registered", bad)
				}
			}
			if !tc.detailed {
				want := slices.Sorted(slices.Values(TSDBHealthMetrics))
				if !slices.Equal(names, want) {
					t.Fatalf("TSDB metrics %v, want %v", names, want)
				}
				return
			}
			if len(names) < 50 {
				t.Fatalf("detailed: only %d TSDB metrics", len(names))
			}
		})
	}
}
