package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// Defaults of the limits, Prometheus' own.
const (
	DefaultMaxSamples = 50_000_000
	DefaultTimeout    = 2 * time.Minute
)

// Options configure the PromQL API.
type Options struct {
	Targets func() ([]Target, error)
	// MaxSamples bounds the samples a query holds in memory at once
	// (--query.max-samples); past it the query fails with 422.
	MaxSamples int
	// Timeout bounds a query's evaluation (--query.timeout).
	Timeout time.Duration
	// MaxConcurrency bounds the queries evaluated at once
	// (--query.max-concurrency); more wait for a slot within their timeout.
	MaxConcurrency int
	// LookbackDelta is how far back an instant selector looks (5m when 0).
	LookbackDelta time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// API answers Prometheus' HTTP API query routes.
type API struct {
	opts      Options
	queryable Queryable
	engine    *promql.Engine
	parser    parser.Parser
	slots     chan struct{}
	logger    *slog.Logger
}

// New returns the API.
func New(o Options) *API {
	if o.MaxSamples <= 0 {
		o.MaxSamples = DefaultMaxSamples
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := parser.NewParser(parser.Options{})
	return &API{
		opts:      o,
		queryable: Queryable{Targets: o.Targets},
		parser:    p,
		slots:     make(chan struct{}, o.MaxConcurrency),
		logger:    o.Logger,
		engine: promql.NewEngine(promql.EngineOpts{
			Logger:        o.Logger.With("component", "promql"),
			MaxSamples:    o.MaxSamples,
			Timeout:       o.Timeout,
			LookbackDelta: o.LookbackDelta,
			// As Prometheus: a subquery without a step steps by 1m.
			NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
			EnableAtModifier:         true,
			EnableNegativeOffset:     true,
			Parser:                   p,
		}),
	}
}

// errorType values of Prometheus' API.
const (
	errBadData     = "bad_data"
	errTimeout     = "timeout"
	errCanceled    = "canceled"
	errExec        = "execution"
	errInternal    = "internal"
	errUnavailable = "unavailable"
)

// statusClientClosed is the status Prometheus gives a canceled query.
const statusClientClosed = 499

type apiError struct {
	typ string
	err error
}

func (e *apiError) Error() string { return e.err.Error() }

func badData(err error) *apiError { return &apiError{errBadData, err} }

func invalidParam(err error, name string) *apiError {
	return badData(fmt.Errorf("invalid parameter %q: %w", name, err))
}

// queryError classifies an error of a query or a storage read as
// Prometheus' API does.
func queryError(err error) *apiError {
	var eqc promql.ErrQueryCanceled
	var eqt promql.ErrQueryTimeout
	var es promql.ErrStorage
	switch {
	case errors.As(err, &eqc), errors.Is(err, context.Canceled):
		return &apiError{errCanceled, err}
	case errors.As(err, &eqt), errors.Is(err, context.DeadlineExceeded):
		return &apiError{errTimeout, err}
	case errors.Is(err, experiment.ErrNotReady), errors.Is(err, experiment.ErrUnavailable):
		return &apiError{errUnavailable, err}
	case errors.As(err, &es):
		return &apiError{errInternal, err}
	}
	return &apiError{errExec, err}
}

func statusOf(typ string) int {
	switch typ {
	case errBadData:
		return http.StatusBadRequest
	case errExec:
		return http.StatusUnprocessableEntity
	case errCanceled:
		return statusClientClosed
	case errTimeout, errUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// response is Prometheus' API envelope.
type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

// queryData is the data of a query or query_range answer.
type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

// write answers data, or aerr when set, with the annotations of query q.
func (a *API) write(w http.ResponseWriter, data any, aerr *apiError, annos annotations.Annotations, q string) {
	code, b := a.encode(data, aerr, annos, q)
	send(w, code, b)
}

func send(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// encode is the answer write sends, as a status code and a body.
func (a *API) encode(data any, aerr *apiError, annos annotations.Annotations, q string) (int, []byte) {
	warnings, infos := annos.AsStrings(q, 10, 10)
	resp := response{Status: "success", Data: data, Warnings: warnings, Infos: infos}
	code := http.StatusOK
	if aerr != nil {
		resp = response{Status: "error", ErrorType: aerr.typ, Error: aerr.err.Error(), Warnings: warnings, Infos: infos}
		code = statusOf(aerr.typ)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		a.logger.Error("cannot encode the PromQL answer", "err", err)
		code = http.StatusInternalServerError
		b, _ = json.Marshal(response{Status: "error", ErrorType: errInternal, Error: "encoding the response: " + err.Error()})
	}
	if code >= 500 && code != http.StatusServiceUnavailable {
		a.logger.Error("PromQL request failed", "code", code, "err", aerr)
	}
	return code, b
}

// Query answers /api/v1/query.
func (a *API) Query(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		a.write(w, nil, badData(fmt.Errorf("error parsing form values: %w", err)), nil, "")
		return
	}
	qs := r.FormValue("query")
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		a.write(w, nil, invalidParam(err, "limit"), nil, qs)
		return
	}
	ts, err := parseTimeParam(r, "time", a.opts.Now())
	if err != nil {
		a.write(w, nil, invalidParam(err, "time"), nil, qs)
		return
	}
	ctx, cancel, aerr := a.queryContext(r)
	if aerr != nil {
		a.write(w, nil, aerr, nil, qs)
		return
	}
	defer cancel()
	qry, err := a.engine.NewInstantQuery(ctx, a.queryable, nil, qs, ts)
	a.run(ctx, w, qry, err, qs, limit)
}

// QueryRange answers /api/v1/query_range.
func (a *API) QueryRange(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		a.write(w, nil, badData(fmt.Errorf("error parsing form values: %w", err)), nil, "")
		return
	}
	qs := r.FormValue("query")
	fail := func(e *apiError) { a.write(w, nil, e, nil, qs) }
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		fail(invalidParam(err, "limit"))
		return
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		fail(invalidParam(err, "start"))
		return
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		fail(invalidParam(err, "end"))
		return
	}
	if end.Before(start) {
		fail(invalidParam(errors.New("end timestamp must not be before start time"), "end"))
		return
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		fail(invalidParam(err, "step"))
		return
	}
	if step <= 0 {
		fail(invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step"))
		return
	}
	// Prometheus' bound on the points of one series.
	if end.Sub(start)/step > 11000 {
		fail(badData(errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")))
		return
	}
	ctx, cancel, aerr := a.queryContext(r)
	if aerr != nil {
		fail(aerr)
		return
	}
	defer cancel()
	qry, err := a.engine.NewRangeQuery(ctx, a.queryable, nil, qs, start, end, step)
	a.run(ctx, w, qry, err, qs, limit)
}

// queryContext is the request's context, bounded by its timeout parameter
// and by --query.timeout, whichever is shorter: the wait for a query slot
// counts too, so a queued query cannot wait forever.
func (a *API) queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	d := a.opts.Timeout
	if s := r.FormValue("timeout"); s != "" {
		t, err := parseDuration(s)
		if err != nil {
			return nil, nil, invalidParam(err, "timeout")
		}
		if t <= 0 {
			return nil, nil, invalidParam(errors.New("timeout must be positive"), "timeout")
		}
		d = min(d, t)
	}
	ctx, cancel := context.WithTimeout(r.Context(), d)
	return ctx, cancel, nil
}

// run evaluates qry in a query slot and answers its result, encoded before
// the query is closed: the result's memory is the query's.
func (a *API) run(ctx context.Context, w http.ResponseWriter, qry promql.Query, err error, qs string, limit int) {
	if err != nil {
		var eqt promql.ErrQueryTimeout
		var eqc promql.ErrQueryCanceled
		if errors.As(err, &eqt) || errors.As(err, &eqc) {
			a.write(w, nil, queryError(err), nil, qs)
		} else {
			a.write(w, nil, invalidParam(err, "query"), nil, qs)
		}
		return
	}
	// The answer is encoded with the query open (its result is the
	// query's memory), then the query and its slot are given back before
	// the answer is sent: a client slow to read holds neither.
	var code int
	var body []byte
	defer func() { send(w, code, body) }()
	defer qry.Close()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		code, body = a.encode(nil, queryError(contextError(ctx.Err(), "waiting for a query slot")), nil, qs)
		return
	}
	res := qry.Exec(ctx)
	if res.Err != nil {
		code, body = a.encode(nil, queryError(res.Err), res.Warnings, qs)
		return
	}
	annos := res.Warnings
	if truncate(res, limit) {
		annos.Add(errors.New("results truncated due to limit"))
	}
	code, body = a.encode(queryData{ResultType: res.Value.Type(), Result: emptyNotNull(res.Value)}, nil, annos, qs)
}

// truncate keeps the first limit series of a vector or matrix result.
func truncate(res *promql.Result, limit int) bool {
	if limit <= 0 {
		return false
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	case promql.Matrix:
		if len(v) > limit {
			res.Value = v[:limit]
			return true
		}
	}
	return false
}

// emptyNotNull makes an empty vector or matrix encode as [], as
// Prometheus answers it.
func emptyNotNull(v parser.Value) parser.Value {
	switch x := v.(type) {
	case promql.Vector:
		if x == nil {
			return promql.Vector{}
		}
	case promql.Matrix:
		if x == nil {
			return promql.Matrix{}
		}
	}
	return v
}

// Series answers /api/v1/series.
func (a *API) Series(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		a.write(w, nil, badData(fmt.Errorf("error parsing form values: %w", err)), nil, "")
		return
	}
	if len(r.Form["match[]"]) == 0 {
		a.write(w, nil, badData(errors.New("no match[] parameter provided")), nil, "")
		return
	}
	q, sets, limit, aerr := a.labelRead(r)
	if aerr != nil {
		a.write(w, nil, aerr, nil, "")
		return
	}
	defer q.Close()
	ctx := q.ctx
	start, end := q.mint, q.maxt
	hints := &storage.SelectHints{Start: start, End: end, Func: "series", Limit: hintLimit(limit)}
	var set storage.SeriesSet
	if len(sets) > 1 {
		ss := make([]storage.SeriesSet, 0, len(sets))
		for _, ms := range sets {
			ss = append(ss, q.Select(ctx, true, hints, ms...))
		}
		set = storage.NewMergeSeriesSet(ss, 0, storage.ChainedSeriesMerge)
	} else {
		set = q.Select(ctx, false, hints, sets[0]...)
	}
	metrics := []labels.Labels{}
	var annos annotations.Annotations
	for set.Next() {
		if len(metrics)%1024 == 1023 && ctx.Err() != nil {
			a.write(w, nil, queryError(contextError(ctx.Err(), "reading series")), annos, "")
			return
		}
		metrics = append(metrics, set.At().Labels())
		if limit > 0 && len(metrics) > limit {
			metrics = metrics[:limit]
			annos.Add(errors.New("results truncated due to limit"))
			break
		}
	}
	annos.Merge(set.Warnings())
	if err := set.Err(); err != nil {
		a.write(w, nil, queryError(err), annos, "")
		return
	}
	a.write(w, metrics, nil, annos, "")
}

// LabelNames answers /api/v1/labels.
func (a *API) LabelNames(w http.ResponseWriter, r *http.Request) {
	a.labels(w, r, func(ctx context.Context, q storage.Querier, h *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelNames(ctx, h, ms...)
	})
}

// LabelValues answers /api/v1/label/{name}/values.
func (a *API) LabelValues(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if len(name) > 3 && name[:3] == "U__" {
		name = model.UnescapeName(name, model.ValueEncodingEscaping)
	}
	if !model.UTF8Validation.IsValidLabelName(name) {
		a.write(w, nil, badData(fmt.Errorf("invalid label name: %q", name)), nil, "")
		return
	}
	a.labels(w, r, func(ctx context.Context, q storage.Querier, h *storage.LabelHints, ms []*labels.Matcher) ([]string, annotations.Annotations, error) {
		return q.LabelValues(ctx, name, h, ms...)
	})
}

// labels answers the sorted union of what list gives for each match[] set.
func (a *API) labels(w http.ResponseWriter, r *http.Request, list func(context.Context, storage.Querier, *storage.LabelHints, []*labels.Matcher) ([]string, annotations.Annotations, error)) {
	if err := r.ParseForm(); err != nil {
		a.write(w, nil, badData(fmt.Errorf("error parsing form values: %w", err)), nil, "")
		return
	}
	q, sets, limit, aerr := a.labelRead(r)
	if aerr != nil {
		a.write(w, nil, aerr, nil, "")
		return
	}
	defer q.Close()
	ctx := q.ctx
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	hints := &storage.LabelHints{Limit: hintLimit(limit)}
	seen := map[string]struct{}{}
	var annos annotations.Annotations
	for _, ms := range sets {
		vals, as, err := list(ctx, q, hints, ms)
		annos.Merge(as)
		if err != nil {
			a.write(w, nil, &apiError{errExec, err}, annos, "")
			return
		}
		for _, v := range vals {
			seen[v] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
		annos.Add(errors.New("results truncated due to limit"))
	}
	a.write(w, out, nil, annos, "")
}

// slot bounds a series or labels read as a query is bounded: it takes a
// query slot, waiting no longer than the query's timeout, and its context
// ends at that timeout. release gives both back.
func (a *API) slot(r *http.Request) (ctx context.Context, release func(), _ *apiError) {
	ctx, cancel, aerr := a.queryContext(r)
	if aerr != nil {
		return nil, nil, aerr
	}
	select {
	case a.slots <- struct{}{}:
		return ctx, func() { <-a.slots; cancel() }, nil
	case <-ctx.Done():
		cancel()
		return nil, nil, queryError(contextError(ctx.Err(), "waiting for a query slot"))
	}
}

// contextError is the engine's error for a context that ended during what.
func contextError(err error, what string) error {
	if errors.Is(err, context.Canceled) {
		return promql.ErrQueryCanceled(what)
	}
	return promql.ErrQueryTimeout(what)
}

// rangeQuerier is a querier with the range it reads, and the context and
// query slot of the read: Close gives all back.
type rangeQuerier struct {
	storage.Querier
	mint, maxt int64
	ctx        context.Context
	release    func()
}

func (q *rangeQuerier) Close() error {
	defer q.release()
	return q.Querier.Close()
}

// labelRead reads the parameters series and labels share, takes a query
// slot (slot) and opens the querier over start and end (all time by
// default).
func (a *API) labelRead(r *http.Request) (*rangeQuerier, [][]*labels.Matcher, int, *apiError) {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return nil, nil, 0, invalidParam(err, "limit")
	}
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		return nil, nil, 0, invalidParam(err, "start")
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		return nil, nil, 0, invalidParam(err, "end")
	}
	sets, err := a.parseMatchers(r.Form["match[]"])
	if err != nil {
		return nil, nil, 0, invalidParam(err, "match[]")
	}
	ctx, release, aerr := a.slot(r)
	if aerr != nil {
		return nil, nil, 0, aerr
	}
	mint, maxt := timestamp.FromTime(start), timestamp.FromTime(end)
	q, err := a.queryable.Querier(mint, maxt)
	if err != nil {
		release()
		return nil, nil, 0, queryError(err)
	}
	return &rangeQuerier{q, mint, maxt, ctx, release}, sets, limit, nil
}

// parseMatchers parses match[] selectors; as in Prometheus, each must have
// a matcher that does not match the empty string.
func (a *API) parseMatchers(ss []string) ([][]*labels.Matcher, error) {
	sets, err := a.parser.ParseMetricSelectors(ss)
	if err != nil {
		return nil, err
	}
outer:
	for _, ms := range sets {
		for _, m := range ms {
			if m != nil && !m.Matches("") {
				continue outer
			}
		}
		return nil, errors.New("match[] must contain at least one non-empty matcher")
	}
	return sets, nil
}

// BuildInfo answers /api/v1/status/buildinfo with the sidecar's version,
// the shape Grafana reads.
func (a *API) BuildInfo(w http.ResponseWriter, r *http.Request) {
	a.write(w, map[string]string{
		"version":   version.Version,
		"revision":  version.GetRevision(),
		"branch":    version.Branch,
		"buildUser": version.BuildUser,
		"buildDate": version.BuildDate,
		"goVersion": version.GoVersion,
	}, nil, nil, "")
}

// The default range of series and labels, Prometheus' bounds.
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	s := r.FormValue(name)
	if s == "" {
		return def, nil
	}
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

// parseTime reads unix seconds (with a fraction) or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	// time.Parse takes only four-digit years; these are the defaults.
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

// parseDuration reads seconds (with a fraction) or a Prometheus duration.
func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return n, nil
}

// hintLimit asks the storage for one more than limit, so that truncation
// can be told.
func hintLimit(limit int) int {
	if limit > 0 && limit < math.MaxInt {
		return limit + 1
	}
	return limit
}
