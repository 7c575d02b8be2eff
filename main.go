// Command crucible-telemetry is a Prometheus-native sidecar for AI/ML
// experiments: it stores enriched events durably, writes their numbers into
// an embedded Prometheus TSDB per experiment and serves them over HTTP.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"
	"github.com/prometheus/prometheus/model/labels"
	"golang.org/x/net/netutil"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/api"
	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/demo"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/query"
	"github.com/crucible-telemetry/crucible-telemetry/remotewrite"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

const appName = "crucible-telemetry"

func main() { os.Exit(run(os.Args[1:])) }

type serveFlags struct {
	web             *web.FlagConfig
	telemetryPath   string
	routePrefix     string
	maxRequestBytes units.Base2Bytes
	readTimeout     model.Duration
	idleTimeout     model.Duration
	maxConnections  int
	probeAddress    string
	otlpGRPCAddress string
	remoteWriteFile string
	externalLabels  []string
	maxEvalScores   int64
	maxInflightReqs int
	maxInflightSize units.Base2Bytes
	queueTimeout    model.Duration
	enableAdminAPI  bool
	enablePprof     bool
	storagePath     string
	retention       model.Duration
	oooWindow       model.Duration
	syncInterval    model.Duration
	archivedIdle    model.Duration
	dedupWindow     model.Duration
	dedupMaxIDs     int
	broadcast       bool
	pricingFile     string
	seriesTTL       model.Duration
	maxLabelValues  int
	tsdbDetails     bool
	queryMaxConc    int
	queryMaxSamples int
	queryTimeout    model.Duration
}

type demoFlags struct {
	cfg      demo.Config
	duration model.Duration
}

type loadgenFlags struct {
	cfg      loadgen.Config
	duration model.Duration
}

func run(args []string) int {
	app := kingpin.New(appName, "Prometheus-native telemetry sidecar for AI/ML experiments.")
	app.Version(version.Print(appName))
	app.HelpFlag.Short('h')
	app.UsageTemplate(usageTemplate)
	logCfg := &promslog.Config{}
	promslogflag.AddFlags(app, logCfg)

	serve := app.Command("serve", "Run the sidecar (the default command).").Default()
	var sf serveFlags
	sf.web = kingpinflag.AddFlags(serve, ":9477")
	serve.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&sf.telemetryPath)
	serve.Flag("web.route-prefix", "Prefix of every route of --web.listen-address, as in Prometheus: the API, the telemetry path, /-/healthy, /-/ready and the landing page live under it. The probe listener keeps its paths.").Default("/").StringVar(&sf.routePrefix)
	serve.Flag("web.max-request-bytes", "Largest request body accepted, also after decompression.").Default("16MiB").BytesVar(&sf.maxRequestBytes)
	serve.Flag("web.read-timeout", "Longest time to read a whole request, headers and body; a slower client is cut off.").Default("1m").SetValue(&sf.readTimeout)
	serve.Flag("web.idle-timeout", "How long a keep-alive connection may wait for its next request.").Default("2m").SetValue(&sf.idleTimeout)
	serve.Flag("web.max-connections", "Most connections open at once on each listen address (0: no limit); further clients wait to be accepted.").Default("512").IntVar(&sf.maxConnections)
	serve.Flag("web.probe-listen-address", "Address serving only /-/healthy and /-/ready, without TLS or authentication, for Kubernetes probes when --web.config.file protects the API (empty: off).").Default("").StringVar(&sf.probeAddress)
	serve.Flag("remote-write.config-file", "Prometheus remote_write YAML (url, basic_auth, authorization, headers, tls_config, queue_config): every raw sample of every experiment is sent to each receiver, from a durable queue (SPEC §16); re-read on SIGHUP and POST /-/reload. Empty: off.").PlaceHolder("FILE").StringVar(&sf.remoteWriteFile)
	serve.Flag("remote-write.external-label", "NAME=VALUE added to every remote-written series and to archived blocks' Thanos labels, repeatable; e.g. pod=$(POD_NAME), so that the samples of two sidecars stay apart.").PlaceHolder("NAME=VALUE").StringsVar(&sf.externalLabels)
	serve.Flag("otlp.grpc-listen-address", "Address of the OTLP/gRPC receiver of traces and logs (SPEC §15), e.g. :4317; served without TLS or authentication, for a sidecar's loopback or pod network (empty: off). OTLP/HTTP is always on the main listener at /v1/traces and /v1/logs.").Default("").StringVar(&sf.otlpGRPCAddress)
	serve.Flag("otlp.max-evaluation-scores", "Most scores the evaluations store holds (spans × score names of gen_ai.evaluation.result log records, kept in memory at ~100 bytes each). Past it a new one is refused in the export's partial success; one replacing a held score is taken (0: no bound).").Default("1000000").Int64Var(&sf.maxEvalScores)
	serve.Flag("ingest.max-inflight-requests", "Ingest requests decoded and stored at once; more wait, then get 429 with Retry-After (0: no limit).").Default("16").IntVar(&sf.maxInflightReqs)
	serve.Flag("ingest.max-inflight-bytes", "Request bodies held in memory at once; more wait, then get 429 with Retry-After. At least --web.max-request-bytes.").Default("32MiB").BytesVar(&sf.maxInflightSize)
	serve.Flag("ingest.queue-timeout", "How long an ingest request waits for room under the two limits above before it gets 429.").Default("500ms").SetValue(&sf.queueTimeout)
	serve.Flag("web.enable-admin-api", "Enable API endpoints that delete data.").Default("false").BoolVar(&sf.enableAdminAPI)
	serve.Flag("web.enable-pprof", "Serve Go profiles under /debug/pprof/.").Default("false").BoolVar(&sf.enablePprof)
	serve.Flag("storage.path", "Directory of the experiments' event logs and TSDBs.").Default("data/").StringVar(&sf.storagePath)
	serve.Flag("storage.tsdb.retention.time", "How long the TSDB keeps samples; 0 keeps them forever. The event log is never trimmed.").Default("0s").SetValue(&sf.retention)
	serve.Flag("storage.tsdb.out-of-order-window", "How far behind an experiment's newest event an event may be and still be stored.").Default("10m").SetValue(&sf.oooWindow)
	serve.Flag("storage.sync-interval", "How often the event log is fsynced; 0 fsyncs before every answer.").Default("1s").SetValue(&sf.syncInterval)
	serve.Flag("storage.archived-idle", "How long an archived experiment's storage stays open after it was last read (analysis, export, PromQL, remote-write); 0 keeps it open until shutdown.").Default("5m").SetValue(&sf.archivedIdle)
	serve.Flag("ingest.dedup-window", "How long a client-chosen event_id is remembered to drop retried events.").Default("1h").SetValue(&sf.dedupWindow)
	serve.Flag("ingest.dedup-max-ids", "Most client-chosen event_ids an experiment remembers for the dedup window, at ~20 bytes each (23 at most): the default is ~80 MB of heap. Beyond it the oldest are forgotten early (crucible_ingest_dedup_evictions_total), and a retry of one is stored again.").Default(fmt.Sprint(tsdbstore.DefaultDedupMaxIDs)).IntVar(&sf.dedupMaxIDs)
	serve.Flag("ingest.broadcast-unrouted", "Send an event that names no experiment to every running experiment, instead of rejecting it when several run.").Default("false").BoolVar(&sf.broadcast)
	serve.Flag("metrics.stopped-series-ttl", "How long a stopped experiment's series stay on /metrics.").Default("15m").SetValue(&sf.seriesTTL)
	serve.Flag("metrics.tsdb-details", "Show every metric of each experiment's TSDB (about a hundred series each), not only the few that tell its health.").Default("false").BoolVar(&sf.tsdbDetails)
	serve.Flag("metrics.max-label-values", "Distinct values of model, provider and event per experiment, on /metrics and in the TSDB; the rest count as \"other\".").Default("50").IntVar(&sf.maxLabelValues)
	serve.Flag("query.max-concurrency", "PromQL queries, series and label reads of /prometheus/api/v1 evaluated at once; more wait for a slot within their timeout.").Default("20").IntVar(&sf.queryMaxConc)
	serve.Flag("query.max-samples", "Most samples a PromQL query may hold in memory at once; past it the query fails (422).").Default(fmt.Sprint(query.DefaultMaxSamples)).IntVar(&sf.queryMaxSamples)
	serve.Flag("query.timeout", "Longest evaluation of a PromQL query (503 timeout past it).").Default("2m").SetValue(&sf.queryTimeout)
	serve.Flag("pricing.file", "YAML price table overriding the embedded one; re-read on SIGHUP and POST /-/reload.").StringVar(&sf.pricingFile)

	app.Command("version", "Print the version.")

	var af analyzeFlags
	an := app.Command("analyze", "Print the exact analysis of an experiment from a data directory (of a stopped sidecar, or an unpacked archive).")
	an.Flag("storage.path", "Data directory.").Default("data/").StringVar(&af.storagePath)
	an.Flag("experiment", "Experiment id.").Required().StringVar(&af.experiment)
	an.Flag("format", "Output: table or json.").Default("table").EnumVar(&af.format, "table", "json")
	an.Flag("cluster", "Also give every mean a clustered standard error and interval, events grouped by KEY: session_id, user_id, cohort, sample_id or metadata.<key>.").PlaceHolder("KEY").StringVar(&af.cluster)
	addFleetFlags(an, &af.fleet)

	var ef exportFlags
	ex := app.Command("export", "Write an experiment's events as CSV, JSONL or JSON from a data directory, in (timestamp, event_id) order.")
	ex.Flag("storage.path", "Data directory.").Default("data/").StringVar(&ef.storagePath)
	ex.Flag("experiment", "Experiment id.").Required().StringVar(&ef.experiment)
	ex.Flag("format", "csv, jsonl or json.").Default("jsonl").EnumVar(&ef.format, "csv", "jsonl", "json")
	ex.Flag("output", "File to write; - for standard output.").Default("-").StringVar(&ef.output)
	ex.Flag("flatten", "CSV: metadata_* and measurement_* columns.").Default("true").BoolVar(&ef.flatten)
	ex.Flag("anonymize", "Replace user and session ids with a keyed hash (key in the data directory).").Default("false").BoolVar(&ef.anonymize)

	var imf importFlags
	im := app.Command("import", "Store the events of a JSONL file (an export, say) in an experiment of a data directory; the sidecar must not be running on it.")
	im.Flag("storage.path", "Data directory.").Default("data/").StringVar(&imf.storagePath)
	im.Flag("experiment", "Experiment to import into; created when missing.").Required().StringVar(&imf.experiment)
	im.Flag("name", "Name of a created experiment (default: the experiment id).").StringVar(&imf.name)
	im.Arg("file", "JSONL file; - for standard input.").Required().StringVar(&imf.file)

	var cf compareFlags
	cmpCmd := app.Command("compare", "Compare experiments from a data directory: the first is the baseline.")
	cmpCmd.Flag("storage.path", "Data directory.").Default("data/").StringVar(&cf.storagePath)
	cmpCmd.Flag("format", "Output: table or json.").Default("table").EnumVar(&cf.format, "table", "json")
	cmpCmd.Flag("bootstrap-resamples", "Bootstrap resamples for the percentile intervals.").Default("2000").IntVar(&cf.resamples)
	cmpCmd.Flag("seed", "Seed of the bootstrap.").Default("1").Uint64Var(&cf.seed)
	cmpCmd.Flag("sequential-tuning", "N* of the anytime-valid confidence sequences: the total events at which they are tightest.").Default(fmt.Sprint(analysis.DefaultSequentialTuning)).Float64Var(&cf.sequentialTuning)
	cmpCmd.Flag("allocation", "Planned share of each experiment, baseline first, for the sample-ratio check (e.g. 50,50 or 0.2,0.8; default equal).").PlaceHolder("A,B,...").SetValue(floatList{&cf.allocation})
	cmpCmd.Flag("pairs", "Instead of the comparison, list the per-sample differences (treatment − baseline, by sample_id) of two experiments in METRIC: success, latency, cost or score:<name>, the largest first.").PlaceHolder("METRIC").StringVar(&cf.pairs)
	cmpCmd.Flag("limit", "With --pairs: most pairs listed.").Default("100").IntVar(&cf.limit)
	cmpCmd.Flag("cluster", "Also give every mean a clustered standard error and every difference of means its clustered interval, events grouped by KEY: session_id, user_id, cohort, sample_id or metadata.<key>.").PlaceHolder("KEY").StringVar(&cf.cluster)
	cmpCmd.Arg("experiments", "Baseline, then one or more treatments.").Required().StringsVar(&cf.experiments)
	addFleetFlags(cmpCmd, &cf.fleet)

	var gf gateFlags
	gt := app.Command("gate", "Fail a CI job when a candidate regresses against the baseline beyond a margin: exit 0 when no check regresses, 1 when one does, 2 on bad usage or missing data.")
	gt.Flag("storage.path", "Data directory to compare offline (of a stopped sidecar, or an unpacked archive); or --url.").PlaceHolder("DIR").StringVar(&gf.storagePath)
	gt.Flag("url", "Base URL of a running sidecar, with its route prefix (e.g. http://localhost:9477/crucible); or --storage.path.").PlaceHolder("URL").StringVar(&gf.url)
	gt.Flag("max-regression", "A check, repeatable: METRIC:MARGIN, METRIC one of latency_mean, latency_p95, cost_mean, success_rate, score:<name>, MARGIN absolute in the metric's unit or N% of the baseline's value (latency_mean:5%, success_rate:0.02, score:exact_match:0.01).").Required().PlaceHolder("METRIC:MARGIN").StringsVar(&gf.checks)
	gt.Flag("format", "Output: table or json.").Default("table").EnumVar(&gf.format, "table", "json")
	gt.Flag("bootstrap-resamples", "Bootstrap resamples for the p95 interval.").Default("2000").IntVar(&gf.resamples)
	gt.Flag("seed", "Seed of the bootstrap, so a gate gives the same verdict on the same data.").Default("1").Uint64Var(&gf.seed)
	gt.Flag("timeout", "With --url: how long to wait for the sidecar's answer.").Default("1m").DurationVar(&gf.timeout)
	gt.Arg("baseline", "Baseline experiment.").Required().StringVar(&gf.baseline)
	gt.Arg("candidate", "Candidate experiment, compared with the baseline.").Required().StringVar(&gf.candidate)

	var pf powerFlags
	pw := app.Command("power", "Plan a sample size from an experiment in a data directory, its events as the baseline.")
	pw.Flag("storage.path", "Data directory.").Default("data/").StringVar(&pf.storagePath)
	pw.Flag("experiment", "Experiment id.").Required().StringVar(&pf.experiment)
	pw.Flag("metric", "latency, cost, success or score:<name>.").Required().StringVar(&pf.metric)
	pw.Flag("mde", "Smallest difference to detect, in the metric's unit (ms, USD, or a success-rate difference such as 0.01).").Required().Float64Var(&pf.mde)
	pw.Flag("alpha", "Two-sided significance level.").Default("0.05").Float64Var(&pf.alpha)
	pw.Flag("power", "Probability of detecting a difference of --mde.").Default("0.8").Float64Var(&pf.power)
	pw.Flag("format", "Output: table or json.").Default("table").EnumVar(&pf.format, "table", "json")

	lg := app.Command("loadgen", "Send realistic LLM events to a running sidecar and report throughput.")
	var lf loadgenFlags
	lg.Flag("target", "Base URL of the sidecar.").Default("http://localhost:9477").StringVar(&lf.cfg.Target)
	lg.Flag("experiment", "Experiment to create and load.").Default("loadgen").StringVar(&lf.cfg.Experiment)
	lg.Flag("events", "Stop after this many events (0: no limit).").Default("0").Int64Var(&lf.cfg.Events)
	lg.Flag("duration", "Stop after this long (0: no limit).").Default("60s").SetValue(&lf.duration)
	lg.Flag("connections", "Concurrent keep-alive connections.").Default("4").IntVar(&lf.cfg.Connections)
	lg.Flag("batch", "Events per NDJSON request.").Default("1000").IntVar(&lf.cfg.BatchSize)
	lg.Flag("rate", "Target events/s over all connections (0: as fast as the sidecar answers).").Default("0").Float64Var(&lf.cfg.Rate)
	lg.Flag("scores", "Quality scores per event, 0 to 4 (exact_match, then judge grades).").Default("0").IntVar(&lf.cfg.Scores)
	lg.Flag("protocol", "json: NDJSON batches to the ingest API; otlp: OTLP/HTTP protobuf exports of GenAI spans to /v1/traces.").Default("json").EnumVar(&lf.cfg.Protocol, "json", "otlp")

	var df demoFlags
	dm := app.Command("demo", "Create a control and a treatment experiment in a running sidecar and stream LLM-like events into both.")
	dm.Flag("target", "Base URL of the sidecar.").Default("http://localhost:9477").StringVar(&df.cfg.Target)
	dm.Flag("rate", "Events/s sent into each experiment.").Default("20").Float64Var(&df.cfg.Rate)
	dm.Flag("duration", "Stop after this long (0: until interrupted).").Default("0s").SetValue(&df.duration)
	dm.Flag("sample-size", "The experiments' sample_size, shown as progress on the dashboards.").Default("10000").IntVar(&df.cfg.SampleSize)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v; try --help\n", appName, err)
		return 2
	}
	logger := promslog.New(logCfg)
	switch cmd {
	case "version":
		fmt.Println(version.Print(appName))
		return 0
	case "loadgen":
		lf.cfg.Duration = time.Duration(lf.duration)
		return runLoadgen(lf.cfg)
	case "demo":
		df.cfg.Duration = time.Duration(df.duration)
		return runDemo(df.cfg)
	case "analyze":
		return runAnalyze(af, os.Stdout)
	case "compare":
		return runCompare(cf, os.Stdout)
	case "power":
		return runPower(pf, os.Stdout)
	case "gate":
		return runGate(gf, os.Stdout, os.Stderr)
	case "export":
		return runExport(ef)
	case "import":
		return runImport(imf, logger)
	}
	return runServe(sf, logger)
}

// usageTemplate is kingpin's, listing the flags of the default command
// (serve) under the top-level help too: running the sidecar is what most
// readers of --help want.
var usageTemplate = kingpin.DefaultUsageTemplate + `{{if not .Context.SelectedCommand -}}
{{range .App.Commands}}{{if .Default -}}
Flags of "{{.Name}}", the default command (also: {{$.App.Name}} {{.Name}} --help):
{{.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end}}{{end -}}
{{end -}}
`

func loadPrices(path string) (*pricing.Table, error) {
	if path == "" {
		return pricing.Default(), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := pricing.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// externalLabels reads the --remote-write.external-label flags.
func externalLabels(flags []string) (labels.Labels, error) {
	b := labels.NewScratchBuilder(len(flags))
	seen := map[string]bool{}
	for _, f := range flags {
		name, value, err := remotewrite.ParseExternalLabel(f)
		if err != nil {
			return labels.EmptyLabels(), err
		}
		if seen[name] {
			return labels.EmptyLabels(), fmt.Errorf("external label %q given twice", name)
		}
		if slices.Contains(tsdbstore.SeriesLabelNames, name) {
			return labels.EmptyLabels(), fmt.Errorf("external label %q: the sidecar's samples carry a label of that name", name)
		}
		seen[name] = true
		b.Add(name, value)
	}
	b.Sort()
	return b.Labels(), nil
}

// followTargets lists the manager's experiments for the remote-write queues.
func followTargets(m *experiment.Manager) func() ([]remotewrite.Target, error) {
	return func() ([]remotewrite.Target, error) {
		ts, err := m.FollowTargets()
		out := make([]remotewrite.Target, len(ts))
		for i, t := range ts {
			out[i] = t
		}
		return out, err
	}
}

func runServe(sf serveFlags, logger *slog.Logger) int {
	logger.Info("starting "+appName, "version", version.Info(), "build_context", version.BuildContext())
	if sf.oooWindow <= 0 {
		logger.Error("--storage.tsdb.out-of-order-window must be > 0")
		return 2
	}
	if sf.maxInflightSize < sf.maxRequestBytes {
		logger.Error("--ingest.max-inflight-bytes must be at least --web.max-request-bytes, or the largest body could never be read",
			"max_inflight_bytes", sf.maxInflightSize.String(), "max_request_bytes", sf.maxRequestBytes.String())
		return 2
	}
	if sf.dedupMaxIDs <= 0 {
		logger.Error("--ingest.dedup-max-ids must be > 0")
		return 2
	}
	if d := time.Duration(sf.archivedIdle); d != 0 && d < time.Second {
		logger.Error("--storage.archived-idle must be 0 (keep open) or at least 1s")
		return 2
	}
	external, err := externalLabels(sf.externalLabels)
	if err != nil {
		logger.Error("bad --remote-write.external-label", "err", err)
		return 2
	}
	var rwConfig *remotewrite.Config
	if sf.remoteWriteFile != "" {
		if rwConfig, err = remotewrite.LoadFile(sf.remoteWriteFile); err != nil {
			logger.Error("cannot load the remote-write configuration", "err", err)
			return 2
		}
	}
	prices, err := loadPrices(sf.pricingFile)
	if err != nil {
		logger.Error("cannot load the price table", "err", err)
		return 1
	}
	priceHolder := pricing.NewHolder(prices)
	var writer *remotewrite.Writer // when --remote-write.config-file is set
	reload := func() error {
		t, err := loadPrices(sf.pricingFile)
		if err != nil {
			logger.Error("reload of the price table failed; keeping the old one", "err", err)
			err = fmt.Errorf("price table: %w", err)
		} else {
			priceHolder.Set(t)
			logger.Info("reloaded the price table", "file", sf.pricingFile, "models", len(t.Models))
		}
		if writer != nil {
			err = errors.Join(err, reloadRemoteWrite(writer, sf.remoteWriteFile, logger))
		}
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("crucible"),
		collector.NewStorage(filepath.Clean(sf.storagePath)),
	)

	followBuffer := 0
	if rwConfig != nil {
		// Remote-write reads the newest samples from memory (tsdbstore's feed).
		followBuffer = tsdbstore.DefaultFollowBuffer
	}
	metrics := collector.New(reg, collector.Options{
		StoppedSeriesTTL: time.Duration(sf.seriesTTL),
	})
	manager := experiment.NewManager(experiment.Options{
		Dir:                 filepath.Clean(sf.storagePath),
		Logger:              logger,
		Metrics:             metrics,
		BroadcastUnrouted:   sf.broadcast,
		MaxEvaluationScores: sf.maxEvalScores,
		ExternalLabels:      external.Map(),
		ArchivedIdle:        archivedIdle(time.Duration(sf.archivedIdle)),
		Store: tsdbstore.Options{
			OutOfOrderWindow:    time.Duration(sf.oooWindow),
			Retention:           time.Duration(sf.retention),
			SyncInterval:        time.Duration(sf.syncInterval),
			DedupWindow:         time.Duration(sf.dedupWindow),
			DedupMaxIDs:         sf.dedupMaxIDs,
			MaxLabelValues:      sf.maxLabelValues,
			DetailedTSDBMetrics: sf.tsdbDetails,
			FollowBuffer:        followBuffer,
			Registerer:          reg,
		},
	})
	defer func() {
		if err := manager.Close(); err != nil {
			logger.Error("closing storage", "err", err)
		}
		logger.Info("storage closed")
	}()
	if rwConfig != nil {
		w, err := remotewrite.New(rwConfig, remotewrite.Options{
			Dir: experiment.RemoteWriteDir(filepath.Clean(sf.storagePath)), Targets: followTargets(manager),
			ExternalLabels: external, Registerer: reg, Logger: logger.With("component", "remote-write"),
		})
		if err != nil {
			logger.Error("cannot set up remote write", "err", err)
			return 2
		}
		w.Start()
		writer = w
		// Stopped before storage closes: its reads hold stores open.
		defer w.Stop()
		for _, e := range rwConfig.RemoteWrite {
			logger.Info("remote-writing every raw sample", "url", e.URL.Redacted(), "external_labels", external.String())
		}
	}

	a := api.New(api.Options{
		Manager: manager, Prices: priceHolder, MaxRequestBytes: int64(sf.maxRequestBytes),
		MaxInflightRequests: sf.maxInflightReqs, MaxInflightBytes: int64(sf.maxInflightSize), QueueTimeout: time.Duration(sf.queueTimeout),
		EnableAdminAPI: sf.enableAdminAPI, Reload: reload, Registerer: reg, Logger: logger,
		PromQL: query.New(query.Options{
			Targets:    query.Experiments(manager),
			MaxSamples: sf.queryMaxSamples, Timeout: time.Duration(sf.queryTimeout), MaxConcurrency: sf.queryMaxConc,
			Logger: logger,
		}),
	})
	handler, err := a.Handler(api.RouteOptions{
		Prefix:        sf.routePrefix,
		TelemetryPath: sf.telemetryPath,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError), Registry: reg, EnableOpenMetrics: true,
		}),
		Pprof: sf.enablePprof,
	})
	if err != nil {
		logger.Error("cannot set up the routes", "err", err)
		return 2
	}

	srv := api.NewServer(handler, api.ServerOptions{
		ReadTimeout: time.Duration(sf.readTimeout), IdleTimeout: time.Duration(sf.idleTimeout), Logger: logger,
	})
	listeners, err := api.Listen(sf.web, sf.maxConnections)
	if err != nil {
		logger.Error("cannot listen", "err", err)
		return 1
	}
	serveErr := make(chan error, 3)
	go func() { serveErr <- web.ServeMultiple(listeners, srv, sf.web, logger) }()
	if sf.probeAddress != "" {
		probes := api.NewServer(a.Probes(), api.ServerOptions{ReadTimeout: 10 * time.Second, IdleTimeout: time.Duration(sf.idleTimeout), Logger: logger})
		l, err := net.Listen("tcp", sf.probeAddress)
		if err != nil {
			logger.Error("cannot listen for probes", "err", err)
			return 1
		}
		logger.Info("serving /-/healthy and /-/ready without TLS or authentication", "address", l.Addr().String())
		go func() { serveErr <- probes.Serve(netutil.LimitListener(l, 16)) }()
		defer probes.Close()
	}

	if sf.otlpGRPCAddress != "" {
		l, err := net.Listen("tcp", sf.otlpGRPCAddress)
		if err != nil {
			logger.Error("cannot listen for OTLP/gRPC", "err", err)
			return 1
		}
		grpcSrv := a.GRPCServer()
		logger.Info("serving OTLP/gRPC without TLS or authentication", "address", l.Addr().String())
		go func() { serveErr <- grpcSrv.Serve(netutil.LimitListener(l, sf.maxConnections)) }()
		// Stopped before storage closes: in-flight exports are stored first.
		defer grpcSrv.GracefulStop()
	}

	openErr := make(chan error, 1)
	go func() { openErr <- manager.Open() }()

	// Stopped experiments' series go once their TTL has passed.
	expire := time.NewTicker(min(time.Duration(sf.seriesTTL)/4+time.Second, 15*time.Second))
	defer expire.Stop()

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(term)
	defer signal.Stop(hup)

	code := 0
loop:
	for {
		select {
		case err := <-openErr:
			if err != nil {
				logger.Error("cannot open experiment storage", "err", err)
				code = 1
				break loop
			}
			logger.Info("ready", "storage", sf.storagePath)
		case <-hup:
			_ = reload()
		case <-expire.C:
			for _, id := range metrics.Expire() {
				logger.Info("removed the series of a stopped experiment", "id", id)
			}
		case sig := <-term:
			logger.Info("received signal, shutting down", "signal", sig.String())
			break loop
		case err := <-serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				logger.Error("HTTP server failed", "err", err)
				code = 1
			}
			break loop
		}
	}
	// Stop taking requests and drain those in flight before storage closes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Error("draining HTTP requests", "err", err)
	}
	return code
}

func runLoadgen(cfg loadgen.Config) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	rep, err := loadgen.Run(ctx, cfg)
	fmt.Println(rep)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return 0
}

func runDemo(cfg demo.Config) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg.Log, cfg.Seed = os.Stdout, uint64(time.Now().UnixNano())
	target := strings.TrimRight(cfg.Target, "/")
	fmt.Printf("while it runs, try:\n  curl -s '%s/api/v1/compare?experiments=demo-control,demo-treatment'\n  curl -s %s/metrics | grep crucible_events_total\n", target, target)
	accepted, err := demo.Run(ctx, cfg)
	for _, a := range demo.Arms {
		fmt.Printf("%s: %d events accepted\n", a.ID, accepted[a.ID])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return 0
}

// archivedIdle maps --storage.archived-idle to the Manager's option: 0
// there is "until shutdown", which the Manager spells negative.
func archivedIdle(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// reloadRemoteWrite reads the remote-write configuration again and applies
// it; a file that does not parse, or cannot be set up, leaves the queues
// running as they are.
func reloadRemoteWrite(w *remotewrite.Writer, file string, logger *slog.Logger) error {
	cfg, err := remotewrite.LoadFile(file)
	if err == nil {
		err = w.Apply(cfg)
	}
	if err != nil {
		logger.Error("reload of the remote-write configuration failed; keeping the queues running", "file", file, "err", err)
		return fmt.Errorf("remote-write configuration: %w", err)
	}
	urls := make([]string, len(cfg.RemoteWrite))
	for i, e := range cfg.RemoteWrite {
		urls[i] = e.URL.Redacted()
	}
	logger.Info("reloaded the remote-write configuration", "file", file, "receivers", urls)
	return nil
}
