package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/promsource"
)

// fleetFlags choose a Prometheus-compatible query API to read the raw
// samples of a fleet of sidecars from (SPEC §16).
type fleetFlags struct {
	url          string
	headers      []string
	selector     string
	start, end   string
	chunkSamples int64
	timeout      time.Duration
	read         string
}

// defaultFleetSpan is how far back the samples are read without --prometheus.start.
const defaultFleetSpan = 90 * 24 * time.Hour

func addFleetFlags(cmd *kingpin.CmdClause, ff *fleetFlags) {
	cmd.Flag("prometheus.url", "Instead of a data directory, read the raw samples the sidecars remote-wrote from this Prometheus-compatible query API (Prometheus, Mimir, Thanos, VictoriaMetrics; e.g. http://prometheus:9090, or Mimir's http://mimir/prometheus).").PlaceHolder("URL").StringVar(&ff.url)
	cmd.Flag("prometheus.header", "With --prometheus.url: a header sent with every query, repeatable (e.g. X-Scope-OrgID:team-a).").PlaceHolder("NAME:VALUE").StringsVar(&ff.headers)
	cmd.Flag("prometheus.selector", "With --prometheus.url: label matchers ANDed to every query (e.g. '{cluster=\"eu\"}').").PlaceHolder("SELECTOR").StringVar(&ff.selector)
	cmd.Flag("prometheus.start", "With --prometheus.url: read samples after this time, RFC 3339 (default: 90 days before the end).").PlaceHolder("TIME").StringVar(&ff.start)
	cmd.Flag("prometheus.end", "With --prometheus.url: read samples up to this time, RFC 3339 (default: now).").PlaceHolder("TIME").StringVar(&ff.end)
	cmd.Flag("prometheus.chunk-samples", "With --prometheus.url: about how many samples one query reads; lower it for a receiver with a lower limit.").Default(fmt.Sprint(promsource.DefaultChunkSamples)).Int64Var(&ff.chunkSamples)
	cmd.Flag("prometheus.read", "With --prometheus.url: how to read the samples: remote-read (Prometheus' remote-read protocol, streamed chunks, at <url>/api/v1/read: Prometheus, Mimir, the sidecar), query (range selectors through the query API: any receiver), or auto (remote read, the query API where the receiver has no remote read).").Default(promsource.ReadAuto).EnumVar(&ff.read, promsource.ReadModes...)
	cmd.Flag("prometheus.timeout", "With --prometheus.url: longest wait for one query's answer.").Default("5m").DurationVar(&ff.timeout)
}

// fleetNotes say where the samples came from and what an analysis from
// raw samples cannot hold.
func fleetNotes(url, via string) []string {
	how := map[string]string{promsource.ReadRemote: "with remote read", promsource.ReadQuery: "through the query API"}[via]
	return []string{
		"read from the raw samples at " + url + " " + how + ": each event rebuilt from its samples (one per number, at its millisecond)",
		"paired analysis needs sample_id, which samples do not carry: the paired blocks count no pairs; compare the sidecars' data directories (or their exports imported into one) for it",
		"not in samples: events without a number, numbers a metrics_config turned off, timestamps below the millisecond, a tokens total other than prompt + completion; event, model and provider values past the label cap count as \"other\"",
	}
}

// source reads the query API ff names.
func (ff fleetFlags) source() (*promsource.Source, error) {
	end := time.Now()
	if ff.end != "" {
		t, err := time.Parse(time.RFC3339Nano, ff.end)
		if err != nil {
			return nil, fmt.Errorf("--prometheus.end: %w", err)
		}
		end = t
	}
	start := end.Add(-defaultFleetSpan)
	if ff.start != "" {
		t, err := time.Parse(time.RFC3339Nano, ff.start)
		if err != nil {
			return nil, fmt.Errorf("--prometheus.start: %w", err)
		}
		start = t
	}
	header := http.Header{}
	for _, h := range ff.headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("--prometheus.header %q: want NAME:VALUE", h)
		}
		header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	sel, err := promsource.ParseSelector(ff.selector)
	if err != nil {
		return nil, err
	}
	return promsource.New(promsource.Options{
		URL: ff.url, Header: header, Selector: sel, Start: start, End: end,
		ChunkSamples: ff.chunkSamples, Client: &http.Client{Timeout: ff.timeout}, Read: ff.read,
	})
}

// fleet is the analysis over src's samples; conditions collects each
// experiment's condition labels.
func fleet(src *promsource.Source, conditions map[string][]string) *experiment.Fleet {
	return experiment.NewFleet(func(ctx context.Context, id string, f experiment.Filter) ([]analysis.Point, error) {
		if !experiment.ValidID(id) {
			return nil, fmt.Errorf("%w: invalid experiment id %q", experiment.ErrInvalid, id)
		}
		x, err := src.Read(ctx, id, promsource.Filter{Condition: f.Condition, Event: f.Event, Model: f.Model, Provider: f.Provider,
			Success: f.Success, FromUs: f.From, ToUs: f.To})
		if err != nil {
			return nil, err
		}
		if conditions != nil {
			conditions[id] = x.Conditions
		}
		return x.Points, nil
	})
}

func fleetFail(cmd string, code int, err error) int {
	fmt.Fprintf(os.Stderr, "%s %s --prometheus.url: %v\n", appName, cmd, err)
	return code
}

func runFleetAnalyze(af analyzeFlags, w io.Writer) int {
	if af.cluster != "" {
		return fleetFail("analyze", 2, fmt.Errorf("--cluster needs the events' %s, which samples do not carry: analyze a data directory", af.cluster))
	}
	src, err := af.fleet.source()
	if err != nil {
		return fleetFail("analyze", 2, err)
	}
	conditions := map[string][]string{}
	report, err := fleet(src, conditions).Analyze(context.Background(), af.experiment, experiment.Filter{})
	if err != nil {
		return fleetFail("analyze", 1, err)
	}
	report.Notes = fleetNotes(af.fleet.url, src.Via())
	if af.format == "json" {
		err = writeJSON(w, report)
	} else {
		title := fmt.Sprintf("experiment %s (condition %s)\n%s", af.experiment, strings.Join(conditions[af.experiment], ", "), strings.Join(report.Notes, "\n"))
		err = analysis.WriteReport(w, title, report)
	}
	if err != nil {
		return fleetFail("analyze", 1, err)
	}
	return 0
}

func runFleetCompare(cf compareFlags, opts analysis.CompareOptions, w io.Writer) int {
	if cf.cluster != "" || cf.pairs != "" {
		return fleetFail("compare", 2, fmt.Errorf("--cluster and --pairs need the events' keys (session, sample ids), which samples do not carry: compare a data directory"))
	}
	src, err := cf.fleet.source()
	if err != nil {
		return fleetFail("compare", 2, err)
	}
	report, err := fleet(src, nil).Compare(context.Background(), cf.experiments, experiment.Filter{}, opts)
	if err != nil {
		return fleetFail("compare", 1, err)
	}
	report.Notes = fleetNotes(cf.fleet.url, src.Via())
	if cf.format == "json" {
		err = writeJSON(w, report)
	} else {
		fmt.Fprintln(w, strings.Join(report.Notes, "\n"))
		comps := make([]analysis.Comparison, len(report.Experiments)-1)
		for i, id := range report.Experiments[1:] {
			comps[i] = report.Comparison[id]
		}
		err = analysis.WriteComparison(w, report.Experiments, report.Individual, comps, report.SRM)
	}
	if err != nil {
		return fleetFail("compare", 1, err)
	}
	return 0
}
