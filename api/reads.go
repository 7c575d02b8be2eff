package api

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/export"
)

// DefaultEventsLimit bounds GET .../events when no limit is given.
const DefaultEventsLimit = 10000

// The read handlers parse a request's parameters, have the Manager read
// and assemble the answer (the analysis and export are its, as they are
// the offline commands'), and answer.

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
	if f.Limit == 0 {
		f.Limit = DefaultEventsLimit
	}
	evs, err := a.Manager.Events(r.Context(), id, f)
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

// parseFilter reads the filters of SPEC §7 (last_n and limit only the
// events route takes).
func parseFilter(r *http.Request, now time.Time) (experiment.Filter, error) {
	q := r.URL.Query()
	f := experiment.Filter{
		Event: q.Get("event"), Condition: q.Get("condition"), Model: q.Get("model"), Provider: q.Get("provider"),
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

// selection reads the experiment and the filters a request names.
func (a *API) selection(r *http.Request) (string, experiment.Filter, error) {
	id, err := pathID(r)
	if err != nil {
		return "", experiment.Filter{}, err
	}
	f, err := parseFilter(r, a.Now())
	return id, f, err
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	id, f, err := a.selection(r)
	if err == nil {
		err = clusterFilter(r.URL.Query(), &f)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rep, err := a.Manager.Analyze(r.Context(), id, f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, rep)
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
	id, f, err := a.selection(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ws, err := a.Manager.Windows(r.Context(), id, f, size, step)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, ws)
}

// parseExperiments reads ?experiments=A,B,...: valid ids, each once.
func parseExperiments(q url.Values) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, part := range strings.Split(q.Get("experiments"), ",") {
		id := strings.TrimSpace(part)
		if id == "" {
			continue
		}
		if !experiment.ValidID(id) {
			return nil, fmt.Errorf("%w: invalid experiment id %q", errBadRequest, id)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: experiment %s named twice", errBadRequest, id)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}

func (a *API) compare(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids, err := parseExperiments(q)
	if err != nil {
		a.fail(w, r, err)
		return
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
	if s := q.Get("sequential_tuning"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v >= 1) || math.IsInf(v, 0) {
			a.fail(w, r, fmt.Errorf("%w: sequential_tuning must be a number of events, at least 1", errBadRequest))
			return
		}
		opts.SequentialTuning = v
	}
	if s := q.Get("allocation"); s != "" {
		for _, part := range strings.Split(s, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				a.fail(w, r, fmt.Errorf("%w: allocation must be a positive share per experiment, like 50,50 or 0.2,0.8", errBadRequest))
				return
			}
			opts.Allocation = append(opts.Allocation, v)
		}
		if len(opts.Allocation) != len(ids) {
			a.fail(w, r, fmt.Errorf("%w: allocation has %d shares for %d experiments", errBadRequest, len(opts.Allocation), len(ids)))
			return
		}
	}
	f, err := parseFilter(r, a.Now())
	if err == nil {
		err = clusterFilter(q, &f)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.Manager.Compare(r.Context(), ids, f, opts)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, out)
}

// DefaultPairsLimit bounds GET /api/v1/compare/pairs when no limit is given.
const DefaultPairsLimit = 100

// pairs answers the per-sample differences of two experiments (SPEC §13).
func (a *API) pairs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ids, err := parseExperiments(q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(ids) != 2 {
		a.fail(w, r, fmt.Errorf("%w: experiments=A,B needs exactly two ids, the baseline and the treatment", errBadRequest))
		return
	}
	metric := q.Get("metric")
	if metric == "" {
		a.fail(w, r, fmt.Errorf("%w: metric is required: %s", errBadRequest, analysis.PairMetrics))
		return
	}
	// parseFilter checks limit as it does for the events route; here it
	// bounds the pairs listed, not the events read.
	f, err := parseFilter(r, a.Now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit := DefaultPairsLimit
	if f.Limit > 0 {
		limit = f.Limit
	}
	f.Limit = 0
	out, err := a.Manager.Pairs(r.Context(), ids, f, metric, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.respond(w, http.StatusOK, out)
}

func (a *API) power(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := experiment.DefaultPowerRequest
	req.Metric = q.Get("metric")
	if req.Metric == "" || q.Get("mde") == "" {
		a.fail(w, r, fmt.Errorf("%w: power needs metric=latency|cost|success|score:<name> and mde, the difference to detect", errBadRequest))
		return
	}
	for _, p := range []struct {
		name string
		dst  *float64
	}{{"mde", &req.MDE}, {"alpha", &req.Alpha}, {"power", &req.Power}} {
		if s := q.Get(p.name); s != "" {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				a.fail(w, r, fmt.Errorf("%w: %s must be a number", errBadRequest, p.name))
				return
			}
			*p.dst = v
		}
	}
	id, f, err := a.selection(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := a.Manager.Power(r.Context(), id, f, req)
	if err != nil {
		a.fail(w, r, err)
		return
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
	w.Header().Set("Content-Type", export.ContentType(opts.Format))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-%s.%s"`, id, a.Now().UTC().Format("20060102T150405Z"), opts.Format))
	// An unknown experiment fails before the first byte: answered as an error.
	a.streamed(w, r, func(w io.Writer) (int64, error) { return a.Manager.Export(r.Context(), w, id, opts) })
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
