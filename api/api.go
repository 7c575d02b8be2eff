package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/export"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

// DefaultEventsLimit bounds GET .../events when no limit is given.
const DefaultEventsLimit = 10000

// Options configure the API.
type Options struct {
	Manager         *experiment.Manager
	Prices          *pricing.Holder
	MaxRequestBytes int64
	// MaxInflightRequests bounds the ingest requests being decoded and
	// stored at once, MaxInflightBytes the request bodies held in memory
	// (0: no bound). A request waits up to QueueTimeout for room, then
	// gets 429 with Retry-After.
	MaxInflightRequests int
	MaxInflightBytes    int64
	QueueTimeout        time.Duration
	EnableAdminAPI      bool
	// Reload re-reads the configuration (the pricing file).
	Reload     func() error
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// API is the HTTP API of the sidecar.
type API struct {
	Options
	logger   *slog.Logger
	ingested *prometheus.CounterVec
	requests *prometheus.HistogramVec
	results  map[string]prometheus.Counter
	bodies   *budget
	slots    slots
}

// Ingest result reasons, the values of crucible_ingest_events_total{result}.
var ingestResults = []string{"accepted", "rejected", "duplicate", "dropped_paused", "dropped_sampled", "unpriced"}

// New builds the API and registers its metrics.
func New(o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	a := &API{Options: o, logger: o.Logger}
	a.ingested = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "crucible_ingest_events_total",
		Help: "Events received by the ingest API, by result. unpriced counts accepted events whose model has no price.",
	}, []string{"result"})
	a.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                        "crucible_http_request_duration_seconds",
		Help:                        "Duration of HTTP requests by handler.",
		Buckets:                     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		NativeHistogramBucketFactor: 1.1,
	}, []string{"handler", "code", "method"})
	a.bodies = newBudget(o.MaxInflightBytes)
	if o.MaxInflightRequests > 0 {
		a.slots = make(slots, o.MaxInflightRequests)
	}
	o.Registerer.MustRegister(a.ingested, a.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crucible_ingest_inflight_bytes",
			Help: "Bytes of request bodies held in memory, bounded by --ingest.max-inflight-bytes.",
		}, a.bodies.inUse),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "crucible_ingest_inflight_requests",
			Help: "Ingest requests being decoded and stored, bounded by --ingest.max-inflight-requests.",
		}, func() float64 { return float64(len(a.slots)) }))
	a.results = make(map[string]prometheus.Counter, len(ingestResults))
	for _, r := range ingestResults {
		a.results[r] = a.ingested.WithLabelValues(r)
	}
	return a
}

// Register adds the API's routes to mux. A known path asked with another
// method answers 405 with Allow, an unknown path under /api/v1/ 404, both
// in the envelope.
func (a *API) Register(mux *http.ServeMux) {
	var paths []string
	methods := map[string][]string{}
	// params are the query parameters the route takes. The /-/ endpoints
	// are not checked: tools probe them with what they like.
	route := func(pattern string, h http.HandlerFunc, params []string) {
		method, path, _ := strings.Cut(pattern, " ")
		if methods[path] == nil {
			paths = append(paths, path)
		}
		methods[path] = append(methods[path], method)
		if method == http.MethodGet {
			methods[path] = append(methods[path], http.MethodHead)
		}
		next := h
		if !strings.HasPrefix(path, "/-/") {
			next = func(w http.ResponseWriter, r *http.Request) {
				if err := checkQuery(r.URL.RawQuery, params); err != nil {
					a.fail(w, r, err)
					return
				}
				h(w, r)
			}
		}
		mux.Handle(pattern, promhttp.InstrumentHandlerDuration(
			a.requests.MustCurryWith(prometheus.Labels{"handler": path}), next))
	}
	route("GET /-/healthy", a.healthy, nil)
	route("GET /-/ready", a.ready, nil)
	route("POST /-/reload", a.reload, nil)
	route("PUT /-/reload", a.reload, nil)
	route("GET /api/v1/experiments", a.listExperiments, listParams)
	route("POST /api/v1/experiments", a.createExperiment, nil)
	route("GET /api/v1/experiments/{id}", a.getExperiment, nil)
	route("POST /api/v1/experiments/{id}/pause", a.transition(a.Manager.Pause), nil)
	route("POST /api/v1/experiments/{id}/resume", a.transition(a.Manager.Resume), nil)
	route("POST /api/v1/experiments/{id}/stop", a.transition(a.Manager.Stop), nil)
	route("POST /api/v1/experiments/{id}/archive", a.transition(a.Manager.Archive), nil)
	route("DELETE /api/v1/experiments/{id}", a.deleteExperiment, nil)
	route("POST /api/v1/events", a.ingest, nil)
	route("POST /api/v1/experiments/{id}/events", a.ingest, nil)
	route("GET /api/v1/experiments/{id}/events", a.events, eventsParams)
	route("GET /api/v1/experiments/{id}/metrics", a.metrics, filterParams)
	route("GET /api/v1/experiments/{id}/windows", a.windows, windowsParams)
	route("GET /api/v1/experiments/{id}/stream", a.stream(a.Manager.Stream), nil)
	route("POST /api/v1/experiments/{id}/stream/reset", a.stream(a.Manager.ResetStream), nil)
	route("GET /api/v1/experiments/{id}/export", a.export, exportParams)
	route("GET /api/v1/compare", a.compare, compareParams)
	route("GET /api/v1/event-types", a.eventTypes, nil)
	route("GET /api/v1/pricing", a.pricing, nil)

	for _, path := range paths {
		allow := strings.Join(methods[path], ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, a.logger, http.StatusMethodNotAllowed, envelope{Status: "error", ErrorType: errBadData,
				Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, path, allow)})
		})
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, fmt.Errorf("%w: %s %s", errNoRoute, r.Method, r.URL.Path))
	})
}

// Probes serves /-/healthy and /-/ready alone: a handler for a listener
// without TLS or authentication that Kubernetes probes can reach however
// --web.config.file protects the API.
func (a *API) Probes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", a.healthy)
	mux.HandleFunc("GET /-/ready", a.ready)
	return mux
}

func (a *API) healthy(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "Healthy.")
}

func (a *API) ready(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !a.Manager.Ready() {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "Opening experiment storage.")
		return
	}
	fmt.Fprintln(w, "Ready.")
}

func (a *API) reload(w http.ResponseWriter, r *http.Request) {
	if a.Reload == nil {
		a.respond(w, http.StatusOK, nil)
		return
	}
	if err := a.Reload(); err != nil {
		a.fail(w, r, fmt.Errorf("%w: reload: %w", errBadRequest, err))
		return
	}
	a.respond(w, http.StatusOK, nil)
}

func (a *API) listExperiments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := experiment.Status(q.Get("status"))
	if status != "" && !validStatus(status) {
		a.fail(w, r, fmt.Errorf("%w: unknown status %q", errBadRequest, status))
		return
	}
	list, err := a.Manager.List(status, q.Get("tag"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, list)
}

func validStatus(s experiment.Status) bool {
	for _, v := range experiment.Statuses {
		if v == s {
			return true
		}
	}
	return false
}

func (a *API) createExperiment(w http.ResponseWriter, r *http.Request) {
	buf, err := readBody(w, r, a.MaxRequestBytes, a.bodies, time.Now().Add(a.QueueTimeout))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer buf.release()
	req, err := experiment.DecodeCreateRequest(buf.Bytes())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rec, created, err := a.Manager.Create(req)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
		w.Header().Set("Location", "/api/v1/experiments/"+rec.ID)
	}
	a.respond(w, code, rec)
}

// pathID returns the {id} path value after checking its syntax.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !experiment.IDPattern.MatchString(id) {
		return "", fmt.Errorf("%w: invalid experiment id %q", errBadRequest, id)
	}
	return id, nil
}

func (a *API) getExperiment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err == nil {
		var rec experiment.Record
		if rec, err = a.Manager.Get(id); err == nil {
			a.respond(w, http.StatusOK, rec)
			return
		}
	}
	a.fail(w, r, err)
}

func (a *API) transition(op func(string) (experiment.Record, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err == nil {
			var rec experiment.Record
			if rec, err = op(id); err == nil {
				a.respond(w, http.StatusOK, rec)
				return
			}
		}
		a.fail(w, r, err)
	}
}

// isNDJSON tells whether the body is one event per line.
func isNDJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines":
		return true
	}
	return false
}

func (a *API) ingest(w http.ResponseWriter, r *http.Request) {
	id := ""
	if r.PathValue("id") != "" {
		var err error
		if id, err = pathID(r); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	if !a.Manager.Ready() {
		a.fail(w, r, experiment.ErrNotReady)
		return
	}
	// The body is read before a slot is taken, so a client trickling its
	// body does not hold one of the few slots.
	deadline := time.Now().Add(a.QueueTimeout)
	buf, err := readBody(w, r, a.MaxRequestBytes, a.bodies, deadline)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// Parsed events alias the buffer until they are stored.
	defer buf.release()
	done, ok := a.slots.acquire(r.Context(), deadline)
	if !ok {
		a.fail(w, r, fmt.Errorf("%w: %d ingest requests are being stored (--ingest.max-inflight-requests); retry later", errBusy, cap(a.slots)))
		return
	}
	defer done()
	parts, err := event.Split(buf.Bytes(), isNDJSON(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.Now()
	prices := a.Prices.Table()
	dec := event.GetDecoder()
	defer event.PutDecoder(dec) // after the events are stored: they share its arena
	events := make([]*event.Event, len(parts))
	backing := make([]event.Event, len(parts))
	var parseRejects []experiment.Rejection
	for i, p := range parts {
		e := &backing[i]
		err := dec.ParseForStorage(e, p, now, prices)
		if err != nil {
			parseRejects = append(parseRejects, experiment.Rejection{Index: i, Error: err.Error()})
			continue
		}
		if e.ExperimentID != "" && id == "" && !experiment.IDPattern.MatchString(e.ExperimentID) {
			parseRejects = append(parseRejects, experiment.Rejection{Index: i, Error: "invalid experiment_id " + strconv.Quote(e.ExperimentID)})
			continue
		}
		events[i] = e
	}
	res, err := a.Manager.Ingest(id, events, now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(parseRejects) > 0 {
		res.Rejected = mergeRejections(parseRejects, res.Rejected)
	}
	a.count(res)
	a.respond(w, http.StatusOK, res)
}

func (a *API) count(res experiment.IngestResult) {
	for _, c := range []struct {
		name string
		n    int
	}{{"accepted", res.Accepted}, {"rejected", len(res.Rejected)}, {"duplicate", res.Duplicates},
		{"dropped_paused", res.DroppedPaused}, {"dropped_sampled", res.DroppedSampled}, {"unpriced", res.Unpriced}} {
		if c.n > 0 {
			a.results[c.name].Add(float64(c.n))
		}
	}
}

// mergeRejections merges two lists sorted by index.
func mergeRejections(a, b []experiment.Rejection) []experiment.Rejection {
	out := make([]experiment.Rejection, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Index <= b[0].Index {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := parseFilter(r, a.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	evs, err := a.Manager.Events(id, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, evs)
}

// ParseTime reads µs since the epoch or an RFC 3339 string.
func ParseTime(s string) (int64, error) {
	if us, err := strconv.ParseInt(s, 10, 64); err == nil {
		return us, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is neither microseconds since the epoch nor RFC 3339", errBadRequest, s)
	}
	return t.UnixMicro(), nil
}

func parseFilter(r *http.Request, now time.Time) (experiment.Filter, error) {
	q := r.URL.Query()
	f := experiment.Filter{
		Event: q.Get("event"), Condition: q.Get("condition"), Model: q.Get("model"), Provider: q.Get("provider"),
		Limit: DefaultEventsLimit,
	}
	if q.Get("success") != "" {
		b, err := queryBool(q, "success", false)
		if err != nil {
			return f, err
		}
		f.Success = &b
	}
	for _, p := range []struct {
		name string
		dst  **int64
	}{{"from", &f.From}, {"to", &f.To}} {
		if s := q.Get(p.name); s != "" {
			v, err := ParseTime(s)
			if err != nil {
				return f, err
			}
			*p.dst = &v
		}
	}
	if s := q.Get("last"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return f, fmt.Errorf("%w: last must be a positive duration like 5m", errBadRequest)
		}
		from := now.Add(-d).UnixMicro()
		if f.From == nil || *f.From < from {
			f.From = &from
		}
	}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"last_n", &f.LastN}, {"limit", &f.Limit}} {
		if s := q.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return f, fmt.Errorf("%w: %s must be a positive integer", errBadRequest, p.name)
			}
			*p.dst = n
		}
	}
	return f, nil
}

func (a *API) eventTypes(w http.ResponseWriter, _ *http.Request) {
	a.respond(w, http.StatusOK, event.KnownTypes())
}

func (a *API) pricing(w http.ResponseWriter, _ *http.Request) {
	a.respond(w, http.StatusOK, a.Prices.Table())
}

// nullable is a number that encodes as null when undefined (NaN).
type nullable float64

func (n nullable) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

type moments struct {
	Count  int64    `json:"count"`
	Mean   nullable `json:"mean"`
	StdDev nullable `json:"std_dev"`
	Min    nullable `json:"min"`
	Max    nullable `json:"max"`
}

func momentsOf(w collector.Welford) moments {
	if w.N == 0 {
		nan := nullable(math.NaN())
		return moments{Mean: nan, StdDev: nan, Min: nan, Max: nan}
	}
	return moments{Count: w.N, Mean: nullable(w.Mean), StdDev: nullable(w.StdDev()), Min: nullable(w.Min), Max: nullable(w.Max)}
}

// streamView is the answer of GET /api/v1/experiments/{id}/stream.
type streamView struct {
	Since       string  `json:"since"`
	SinceUs     int64   `json:"since_us"`
	Count       int64   `json:"count"`
	LatencyMs   moments `json:"latency"`
	CostUSD     moments `json:"cost"`
	Reliability struct {
		TotalRequests int64    `json:"total_requests"`
		Judged        int64    `json:"judged"`
		Successful    int64    `json:"successful"`
		Failed        int64    `json:"failed"`
		SuccessRate   nullable `json:"success_rate"`
	} `json:"reliability"`
	Events map[string]int64 `json:"events"`
}

func (a *API) stream(get func(string) (collector.Stream, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		s, err := get(id)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		v := streamView{Since: s.Since.UTC().Format(time.RFC3339Nano), SinceUs: s.Since.UnixMicro(), Count: s.Events,
			LatencyMs: momentsOf(s.Latency), CostUSD: momentsOf(s.Cost), Events: s.ByName}
		if v.Events == nil {
			v.Events = map[string]int64{}
		}
		v.Reliability.TotalRequests, v.Reliability.Judged = s.Events, s.Judged
		v.Reliability.Successful, v.Reliability.Failed = s.Successful, s.Judged-s.Successful
		v.Reliability.SuccessRate = nullable(s.SuccessRate())
		a.respond(w, http.StatusOK, v)
	}
}

// points reads the events the request's filters select.
func (a *API) points(r *http.Request) ([]analysis.Point, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	f, err := parseFilter(r, a.Now())
	if err != nil {
		return nil, err
	}
	f.Limit, f.LastN = 0, 0
	return a.Manager.Points(id, f)
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	pts, err := a.points(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, analysis.Analyze(pts))
}

func (a *API) windows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, step := 5*time.Minute, time.Duration(0)
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{"size", &size}, {"step", &step}} {
		if s := q.Get(p.name); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				a.fail(w, r, fmt.Errorf("%w: %s must be a positive duration like 5m", errBadRequest, p.name))
				return
			}
			*p.dst = d
		}
	}
	if step == 0 {
		step = size
	}
	if step > size {
		a.fail(w, r, fmt.Errorf("%w: step (%s) must not exceed size (%s), or events between windows would be left out", errBadRequest, step, size))
		return
	}
	if size.Microseconds() < 1 || step.Microseconds() < 1 {
		a.fail(w, r, fmt.Errorf("%w: size and step must be at least 1µs", errBadRequest))
		return
	}
	pts, err := a.points(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, analysis.Windows(pts, size.Microseconds(), step.Microseconds()))
}

// comparison is the answer of GET /api/v1/compare (SPEC §8).
type comparison struct {
	Experiments []string                       `json:"experiments"`
	Individual  []analysis.Report              `json:"individual"`
	Comparison  map[string]analysis.Comparison `json:"comparison"`
}

func (a *API) compare(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var ids []string
	seen := map[string]bool{}
	for _, part := range strings.Split(q.Get("experiments"), ",") {
		id := strings.TrimSpace(part)
		if id == "" {
			continue
		}
		if !experiment.IDPattern.MatchString(id) {
			a.fail(w, r, fmt.Errorf("%w: invalid experiment id %q", errBadRequest, id))
			return
		}
		if seen[id] {
			a.fail(w, r, fmt.Errorf("%w: experiment %s named twice", errBadRequest, id))
			return
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if len(ids) < 2 {
		a.fail(w, r, fmt.Errorf("%w: experiments=A,B[,C...] needs at least two ids; the first is the baseline", errBadRequest))
		return
	}
	opts := analysis.CompareOptions{Resamples: analysis.DefaultResamples, Seed: 1}
	if s := q.Get("bootstrap_resamples"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 100000 {
			a.fail(w, r, fmt.Errorf("%w: bootstrap_resamples must be 0 to 100000", errBadRequest))
			return
		}
		opts.Resamples = n
	}
	if s := q.Get("seed"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			a.fail(w, r, fmt.Errorf("%w: seed must be a positive integer", errBadRequest))
			return
		}
		opts.Seed = n
	}
	f, err := parseFilter(r, a.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f.Limit, f.LastN = 0, 0
	groups := make([][]analysis.Point, len(ids))
	for i, id := range ids {
		if groups[i], err = a.Manager.Points(id, f); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	cmp := analysis.Compare(groups[0], groups[1:], opts)
	out := comparison{Experiments: ids, Comparison: map[string]analysis.Comparison{}}
	for i, g := range groups {
		out.Individual = append(out.Individual, analysis.Analyze(g))
		if i > 0 {
			out.Comparison[ids[i]] = cmp[i-1]
		}
	}
	a.respond(w, http.StatusOK, out)
}

func (a *API) export(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	opts := experiment.ExportOptions{Format: q.Get("format"), Flatten: true}
	if opts.Format == "" {
		opts.Format = "jsonl"
	}
	if !slices.Contains(export.Formats, opts.Format) {
		a.fail(w, r, fmt.Errorf("%w: format must be csv, jsonl or json", errBadRequest))
		return
	}
	var anonymize bool
	if opts.Flatten, err = queryBool(q, "flatten", true); err == nil {
		anonymize, err = queryBool(q, "anonymize", false)
	}
	if err == nil && anonymize {
		opts.Anonymize, err = a.Manager.AnonymizeKey()
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if opts.Filter, err = parseFilter(r, a.Now()); err != nil {
		a.fail(w, r, err)
		return
	}
	opts.Filter.Limit, opts.Filter.LastN = 0, 0
	ordered, rec, err := a.Manager.Ordered(id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", export.ContentType(opts.Format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.%s"`, rec.ID, a.Now().UTC().Format("20060102T150405Z"), opts.Format))
	a.streamed(w, r, func(w io.Writer) (int64, error) { return ordered.Export(w, opts) })
}

// countingWriter counts the bytes that reached w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// streamed writes a response body as write produces it. A failure before
// the first byte is answered with the error; after it, the connection is
// aborted, so the client sees a broken response, never a short one that
// looks whole.
func (a *API) streamed(w http.ResponseWriter, r *http.Request, write func(io.Writer) (int64, error)) {
	cw := &countingWriter{w: w}
	items, err := write(cw)
	if err == nil {
		return
	}
	if cw.n == 0 {
		w.Header().Del("Content-Disposition")
		a.fail(w, r, err)
		return
	}
	a.logger.Error("response failed part way; aborting the connection", "method", r.Method, "path", r.URL.Path,
		"items", items, "bytes", cw.n, "err", err)
	panic(http.ErrAbortHandler)
}

func (a *API) deleteExperiment(w http.ResponseWriter, r *http.Request) {
	if !a.EnableAdminAPI {
		a.fail(w, r, errAdminAPI)
		return
	}
	id, err := pathID(r)
	if err == nil {
		err = a.Manager.Delete(id)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, nil)
}

// queryBool reads a true/false query parameter, def when absent.
func queryBool(q url.Values, name string, def bool) (bool, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%w: %s must be true or false", errBadRequest, name)
	}
	return b, nil
}
