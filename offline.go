package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// The offline commands read a data directory without a server; gate reads
// one, or asks a running sidecar.

type analyzeFlags struct {
	storagePath, experiment, format string
	cluster                         string // a cluster key: clustered standard errors
	fleet                           fleetFlags
}

type compareFlags struct {
	storagePath, format string
	experiments         []string
	resamples           int
	seed                uint64
	sequentialTuning    float64
	allocation          []float64
	pairs               string // a metric: list the per-sample differences instead
	limit               int
	cluster             string // a cluster key: clustered intervals
	fleet               fleetFlags
}

type powerFlags struct {
	storagePath, experiment, format, metric string
	mde, alpha, power                       float64
}

// floatList is a flag of comma-separated positive numbers.
type floatList struct{ dst *[]float64 }

func (l floatList) Set(s string) error {
	*l.dst = nil
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%q: want positive numbers separated by commas", s)
		}
		*l.dst = append(*l.dst, v)
	}
	return nil
}

func (l floatList) String() string {
	if l.dst == nil {
		return ""
	}
	parts := make([]string, len(*l.dst))
	for i, v := range *l.dst {
		parts[i] = strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// clusterFilter is the filter of --cluster=KEY (SPEC §14): none when
// empty.
func clusterFilter(key string) (experiment.Filter, error) {
	if key == "" {
		return experiment.Filter{}, nil
	}
	k, err := event.ParseClusterKey(key)
	if err != nil {
		return experiment.Filter{}, fmt.Errorf("--cluster: %s", strings.TrimPrefix(err.Error(), event.ErrInvalid.Error()+": "))
	}
	return experiment.Filter{Cluster: &k}, nil
}

// clusterNote says what a table's clustered errors are clustered by.
func clusterNote(key string) string {
	return fmt.Sprintf("clustered errors by %s: events with one value are one cluster, events without it a cluster each", key)
}

func runAnalyze(af analyzeFlags, w io.Writer) int {
	if af.fleet.url != "" {
		return runFleetAnalyze(af, w)
	}
	f, err := clusterFilter(af.cluster)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s analyze: %v\n", appName, err)
		return 2
	}
	d := experiment.NewOffline(af.storagePath)
	rec, err := d.Get(af.experiment)
	var report analysis.Report
	if err == nil {
		report, err = d.Analyze(context.Background(), af.experiment, f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s analyze: %v\n", appName, err)
		return 1
	}
	if af.format == "json" {
		err = writeJSON(w, report)
	} else {
		title := fmt.Sprintf("experiment %s — %s (condition %s, %s)", rec.ID, rec.Name, rec.Condition, rec.Status)
		if af.cluster != "" {
			title += "\n" + clusterNote(af.cluster)
		}
		err = analysis.WriteReport(w, title, report)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s analyze: %v\n", appName, err)
		return 1
	}
	return 0
}

func runCompare(cf compareFlags, w io.Writer) int {
	f, err := clusterFilter(cf.cluster)
	if err == nil && cf.pairs != "" && cf.cluster != "" {
		err = errors.New("--cluster does not apply to --pairs, which lists per-sample differences")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s compare: %v\n", appName, err)
		return 2
	}
	if cf.pairs != "" && cf.fleet.url == "" {
		return runPairs(cf, w)
	}
	if len(cf.experiments) < 2 {
		fmt.Fprintf(os.Stderr, "%s compare: name a baseline and at least one treatment\n", appName)
		return 2
	}
	if cf.resamples < 0 {
		fmt.Fprintf(os.Stderr, "%s compare: --bootstrap-resamples must be >= 0\n", appName)
		return 2
	}
	if !(cf.sequentialTuning >= 1) {
		fmt.Fprintf(os.Stderr, "%s compare: --sequential-tuning must be at least 1\n", appName)
		return 2
	}
	opts := analysis.CompareOptions{Resamples: cf.resamples, Seed: cf.seed, SequentialTuning: cf.sequentialTuning, Allocation: cf.allocation}
	if cf.fleet.url != "" {
		return runFleetCompare(cf, opts, w)
	}
	report, err := experiment.NewOffline(cf.storagePath).Compare(context.Background(), cf.experiments, f, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s compare: %v\n", appName, err)
		return 1
	}
	if cf.format == "json" {
		err = writeJSON(w, report)
	} else {
		comps := make([]analysis.Comparison, len(report.Experiments)-1)
		for i, id := range report.Experiments[1:] {
			comps[i] = report.Comparison[id]
		}
		if cf.cluster != "" {
			fmt.Fprintln(w, clusterNote(cf.cluster))
		}
		err = analysis.WriteComparison(w, report.Experiments, report.Individual, comps, report.SRM)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s compare: %v\n", appName, err)
		return 1
	}
	return 0
}

// runPairs lists the per-sample differences of two experiments, as GET
// /api/v1/compare/pairs does.
func runPairs(cf compareFlags, w io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "%s compare --pairs: %v\n", appName, err)
		return code
	}
	if len(cf.experiments) != 2 {
		return fail(2, fmt.Errorf("name exactly two experiments, the baseline and the treatment; got %d", len(cf.experiments)))
	}
	if cf.limit < 1 {
		return fail(2, errors.New("--limit must be a positive integer"))
	}
	pl, err := experiment.NewOffline(cf.storagePath).Pairs(context.Background(), cf.experiments, experiment.Filter{}, cf.pairs, cf.limit)
	if errors.Is(err, experiment.ErrInvalid) {
		return fail(2, err)
	}
	if err == nil {
		if cf.format == "json" {
			err = writeJSON(w, pl)
		} else {
			err = analysis.WritePairs(w, fmt.Sprintf("%s − %s, %s, per %s", cf.experiments[1], cf.experiments[0], cf.pairs, pl.Key), pl)
		}
	}
	if err != nil {
		return fail(1, err)
	}
	return 0
}

func runPower(pf powerFlags, w io.Writer) int {
	d := experiment.NewOffline(pf.storagePath)
	req := experiment.PowerRequest{Metric: pf.metric, MDE: pf.mde, Alpha: pf.alpha, Power: pf.power}
	rec, err := d.Get(pf.experiment)
	var plan analysis.Power
	if err == nil {
		plan, err = d.Power(context.Background(), pf.experiment, experiment.Filter{}, req)
	}
	if errors.Is(err, experiment.ErrInvalid) {
		fmt.Fprintf(os.Stderr, "%s power: %v\n", appName, err)
		return 2
	}
	if err == nil {
		if pf.format == "json" {
			err = writeJSON(w, plan)
		} else {
			err = analysis.WritePower(w, fmt.Sprintf("experiment %s — %s as the baseline", rec.ID, rec.Name), plan)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s power: %v\n", appName, err)
		return 1
	}
	return 0
}

type exportFlags struct {
	storagePath, experiment, format, output string
	flatten, anonymize                      bool
}

func runExport(ef exportFlags) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s export: %v\n", appName, err)
		return 1
	}
	d := experiment.NewOffline(ef.storagePath)
	// A missing experiment fails before the output file is created.
	if _, err := d.Get(ef.experiment); err != nil {
		return fail(err)
	}
	opts := experiment.ExportOptions{Format: ef.format, Flatten: ef.flatten}
	var err error
	if ef.anonymize {
		if opts.Anonymize, err = experiment.AnonymizeKey(ef.storagePath); err != nil {
			return fail(err)
		}
	}
	out := os.Stdout
	if ef.output != "-" {
		if out, err = os.Create(ef.output); err != nil {
			return fail(err)
		}
		// A progress line on a terminal for large exports.
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			opts.Progress = func(n int64) { fmt.Fprintf(os.Stderr, "\r%d events written", n) }
		}
	}
	w := bufio.NewWriterSize(out, 1<<20)
	n, err := d.Export(context.Background(), w, ef.experiment, opts)
	if err == nil {
		err = w.Flush()
	}
	if out != os.Stdout {
		err = errors.Join(err, out.Close())
		if opts.Progress != nil {
			fmt.Fprintf(os.Stderr, "\r%d events written\n", n)
		}
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

type importFlags struct {
	storagePath, experiment, name, file string
}

// runImport stores a JSONL file through the same path as the HTTP API.
func runImport(imf importFlags, logger *slog.Logger) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s import: %v\n", appName, err)
		return 1
	}
	in := os.Stdin
	if imf.file != "-" {
		f, err := os.Open(imf.file)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		in = f
	}
	m := experiment.NewManager(experiment.Options{
		Dir: imf.storagePath, Logger: logger,
		Store: tsdbstore.Options{OutOfOrderWindow: 10 * time.Minute, SyncInterval: time.Second, DedupWindow: time.Hour, Registerer: prometheus.NewRegistry()},
	})
	if err := m.Open(); err != nil {
		return fail(err)
	}
	defer m.Close()
	name := imf.name
	if name == "" {
		name = imf.experiment
	}
	if _, err := m.Get(imf.experiment); errors.Is(err, experiment.ErrNotFound) {
		if _, _, err := m.Create(experiment.CreateRequest{ID: imf.experiment, Name: name}); err != nil {
			return fail(err)
		}
	}
	prices := pricing.Default()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var total experiment.IngestResult
	var batch []*event.Event
	line := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := m.Ingest(imf.experiment, batch, time.Now())
		total.Accepted += res.Accepted
		total.Duplicates += res.Duplicates
		total.Rejected = append(total.Rejected, res.Rejected...)
		batch = batch[:0]
		return err
	}
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		e, err := event.Parse(sc.Bytes(), time.Now(), prices)
		if err != nil {
			total.Rejected = append(total.Rejected, experiment.Rejection{Index: line, Error: err.Error()})
			continue
		}
		batch = append(batch, e)
		if len(batch) == 1000 {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fail(err)
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	fmt.Printf("accepted=%d duplicates=%d rejected=%d\n", total.Accepted, total.Duplicates, len(total.Rejected))
	for _, r := range total.Rejected[:min(len(total.Rejected), 10)] {
		fmt.Fprintf(os.Stderr, "line %d: %s\n", r.Index, r.Error)
	}
	if len(total.Rejected) > 0 {
		return 1
	}
	return 0
}

type gateFlags struct {
	storagePath, url, format string
	baseline, candidate      string
	checks                   []string
	resamples                int
	seed                     uint64
	timeout                  time.Duration
}

// Exit codes of gate, as analysis.GateResult.ExitCode gives them.
const (
	gatePassed     = 0
	gateRegression = 1
	gateUsage      = 2 // bad usage, or data missing to decide a check
)

// runGate compares the candidate with the baseline, offline or through a
// running sidecar, and judges each --max-regression check (SPEC §13).
func runGate(gf gateFlags, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "%s gate: "+format+"\n", append([]any{appName}, args...)...)
		return gateUsage
	}
	checks := make([]analysis.GateCheck, len(gf.checks))
	for i, s := range gf.checks {
		c, err := analysis.ParseGateCheck(s)
		if err != nil {
			return fail("--max-regression: %v", err)
		}
		checks[i] = c
	}
	if len(checks) == 0 {
		return fail("name at least one --max-regression=METRIC:MARGIN")
	}
	if (gf.storagePath == "") == (gf.url == "") {
		return fail("name exactly one of --storage.path=DIR (a data directory) and --url=URL (a running sidecar)")
	}
	if gf.baseline == gf.candidate {
		return fail("the baseline and the candidate are both %s; name two experiments", gf.baseline)
	}
	if gf.resamples < 0 || gf.resamples > 100000 {
		return fail("--bootstrap-resamples must be 0 to 100000")
	}
	if gf.seed == 0 {
		return fail("--seed must be a positive integer")
	}
	ids := []string{gf.baseline, gf.candidate}
	opts := analysis.CompareOptions{Resamples: gf.resamples, Seed: gf.seed}
	var report experiment.CompareReport
	var err error
	if gf.url != "" {
		report, err = fetchComparison(gf.url, gf.timeout, ids, opts)
	} else {
		report, err = experiment.NewOffline(gf.storagePath).Compare(context.Background(), ids, experiment.Filter{}, opts)
	}
	if err != nil {
		return fail("%v", err)
	}
	res := analysis.Gate(report.Individual[0], report.Comparison[gf.candidate], checks)
	if gf.format == "json" {
		err = writeJSON(stdout, res)
	} else {
		err = analysis.WriteGate(stdout, res)
	}
	if err != nil {
		return fail("%v", err)
	}
	return gateCode(res, stderr)
}

// fetchComparison asks the sidecar at base (its address and route prefix)
// for the comparison of ids, as GET /api/v1/compare answers it.
func fetchComparison(base string, timeout time.Duration, ids []string, opts analysis.CompareOptions) (experiment.CompareReport, error) {
	var report experiment.CompareReport
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return report, fmt.Errorf("--url=%s: want the sidecar's address and route prefix, like http://localhost:9477 or https://host/crucible", base)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return report, fmt.Errorf("--url=%s: want the sidecar's address and route prefix, without a query or fragment", u.Redacted())
	}
	u = u.JoinPath("api", "v1", "compare")
	u.RawQuery = url.Values{
		"experiments":         {strings.Join(ids, ",")},
		"bootstrap_resamples": {strconv.Itoa(opts.Resamples)},
		"seed":                {strconv.FormatUint(opts.Seed, 10)},
	}.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return report, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", appName+"/"+version.Version)
	client := &http.Client{Timeout: timeout}
	resp, err := client.Do(req) // its error names the URL without a password
	if err != nil {
		return report, fmt.Errorf("cannot reach the sidecar: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return report, fmt.Errorf("reading the answer of %s: %w", u.Redacted(), err)
	}
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Status == "" {
		return report, fmt.Errorf("GET %s answered %s, not the API's JSON (is --url the sidecar's address with its --web.route-prefix?): %.200q",
			u.Redacted(), resp.Status, body)
	}
	if resp.StatusCode != http.StatusOK || env.Status != "success" {
		return report, fmt.Errorf("GET %s answered %s (%s): %s", u.Redacted(), resp.Status, env.ErrorType, env.Error)
	}
	if err := json.Unmarshal(env.Data, &report); err != nil {
		return report, fmt.Errorf("GET %s: the comparison does not decode: %w", u.Redacted(), err)
	}
	if _, ok := report.Comparison[ids[1]]; !ok || len(report.Individual) != len(ids) {
		return report, fmt.Errorf("GET %s: the answer lacks the comparison of %s with %s", u.Redacted(), ids[1], ids[0])
	}
	return report, nil
}

// gateCode is gate's exit code for res (analysis.GateResult.ExitCode),
// naming on stderr the checks that lacked the data to decide.
func gateCode(res analysis.GateResult, stderr io.Writer) int {
	for _, v := range res.Checks {
		if v.Verdict == analysis.VerdictNoData {
			fmt.Fprintf(stderr, "%s gate: %s: no data to judge: no 95%% interval of the difference (too few events or pairs in an arm, no variation, or no such score), so the gate cannot pass\n", appName, v.Metric)
		}
	}
	return res.ExitCode()
}
