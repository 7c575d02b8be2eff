package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/otlp"
)

// OTLP ingest (SPEC §15): OTLP/HTTP here, OTLP/gRPC in grpc.go. Both decode
// with pdata, map with package otlp and store through ingestEvents, the
// end every protocol shares; they differ only in how they answer.

// ExperimentHeader names the experiment of an OTLP request's spans that
// carry no crucible.experiment_id, on the span or its resource.
const ExperimentHeader = "X-Crucible-Experiment"

// maxRejectionMessages bounds the reasons a partial success lists.
const maxRejectionMessages = 5

// otlpMetrics count what OTLP requests held that is not an event.
type otlpMetrics struct {
	ignored     *prometheus.CounterVec
	evaluations *prometheus.CounterVec
}

func newOTLPMetrics(reg prometheus.Registerer, evals func() *evalstore.Store) otlpMetrics {
	m := otlpMetrics{
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_otlp_ignored_total",
			Help: "OTLP spans and log records received that are neither events nor evaluations, by signal and reason.",
		}, []string{"signal", "reason"}),
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "crucible_otlp_evaluations_total",
			Help: "gen_ai.evaluation.result log records received, by result: accepted (stored as a score of their span) or rejected.",
		}, []string{"result"}),
	}
	for _, r := range []string{"accepted", "rejected"} {
		m.evaluations.WithLabelValues(r)
	}
	reg.MustRegister(m.ignored, m.evaluations, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crucible_evaluation_scores",
		Help: "Scores held in the evaluations store (spans × score names), joined to their spans' events when they are read.",
	}, func() float64 {
		if s := evals(); s != nil {
			return float64(s.Count())
		}
		return 0
	}), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crucible_evaluations_corrupt_records",
		Help: "Damaged records of the evaluations file skipped when it was opened (the records around them are kept); 0 when it is whole.",
	}, func() float64 {
		if s := evals(); s != nil {
			return float64(s.Damage().Records)
		}
		return 0
	}))
	return m
}

func (m otlpMetrics) countIgnored(signal string, ignored map[string]int) {
	for reason, n := range ignored {
		m.ignored.WithLabelValues(signal, reason).Add(float64(n))
	}
}

// otlpEncoding is the encoding of an OTLP/HTTP request, and of its answer.
type otlpEncoding bool

const (
	otlpProto otlpEncoding = false
	otlpJSON  otlpEncoding = true
)

func (e otlpEncoding) contentType() string {
	if e == otlpJSON {
		return "application/json"
	}
	return "application/x-protobuf"
}

var errMediaType = errors.New("unsupported media type")

func otlpEncodingOf(r *http.Request) (otlpEncoding, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-protobuf", "application/protobuf":
		return otlpProto, nil
	case "application/json":
		return otlpJSON, nil
	}
	return otlpProto, fmt.Errorf("%w %q: OTLP/HTTP takes application/x-protobuf or application/json", errMediaType, mt)
}

// otlpMessage is an OTLP export request as pdata decodes it, and
// otlpAnswer its response: both signals' types have these methods.
type otlpMessage interface {
	UnmarshalProto([]byte) error
	UnmarshalJSON([]byte) error
}

type otlpAnswer interface {
	MarshalProto() ([]byte, error)
	MarshalJSON() ([]byte, error)
}

// otlpRequest is the part of an OTLP/HTTP handler common to both signals:
// it reads and decodes the body into req, holding an ingest slot, calls
// export, and answers with its response in the request's encoding, or
// with the error.
func (a *API) otlpRequest(w http.ResponseWriter, r *http.Request, req otlpMessage, export func(context.Context) (otlpAnswer, error)) {
	enc, err := otlpEncodingOf(r)
	if err != nil {
		a.otlpFail(w, r, otlpJSON, err)
		return
	}
	if !a.Manager.Ready() {
		a.otlpFail(w, r, enc, experiment.ErrNotReady)
		return
	}
	deadline := time.Now().Add(a.QueueTimeout)
	buf, err := readBody(w, r, a.MaxRequestBytes, a.bodies, deadline)
	if err != nil {
		a.otlpFail(w, r, enc, err)
		return
	}
	defer buf.release()
	done, ok := a.slots.acquire(r.Context(), deadline)
	if !ok {
		a.otlpFail(w, r, enc, fmt.Errorf("%w: %d ingest requests are being stored (--ingest.max-inflight-requests); retry later", errBusy, cap(a.slots)))
		return
	}
	defer done()
	decode := req.UnmarshalProto
	if enc == otlpJSON {
		decode = req.UnmarshalJSON
	}
	if err := decode(buf.Bytes()); err != nil {
		a.otlpFail(w, r, enc, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	resp, err := export(r.Context())
	if err != nil {
		a.otlpFail(w, r, enc, err)
		return
	}
	encode := resp.MarshalProto
	if enc == otlpJSON {
		encode = resp.MarshalJSON
	}
	body, err := encode()
	if err != nil {
		a.otlpFail(w, r, enc, err)
		return
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// otlpFail answers an OTLP/HTTP request that failed as a whole with a
// google.rpc.Status in the request's encoding (OTLP/HTTP "Failures"). A
// full disk is 503: OTLP clients retry 429, 502, 503 and 504 only.
func (a *API) otlpFail(w http.ResponseWriter, r *http.Request, enc otlpEncoding, err error) {
	code, _ := classify(err)
	switch {
	case errors.Is(err, errMediaType):
		code = http.StatusUnsupportedMediaType
	case code == http.StatusInsufficientStorage:
		code = http.StatusServiceUnavailable
	}
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		retry := retryBusy
		if storageFull(err) {
			retry = retryFull
		}
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	if code >= 500 {
		a.logger.Error("OTLP request failed", "path", r.URL.Path, "code", code, "err", err)
	} else {
		a.logger.Debug("OTLP request rejected", "path", r.URL.Path, "code", code, "err", err)
	}
	st := &status.Status{Code: int32(grpcCode(err)), Message: message(err)}
	var body []byte
	if enc == otlpJSON {
		body, _ = protojson.Marshal(st)
	} else {
		body, _ = proto.Marshal(st)
	}
	w.Header().Set("Content-Type", enc.contentType())
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// grpcCode is the gRPC status code of a failed request (OTLP/gRPC, and the
// Status of an OTLP/HTTP failure): retryable ones only where a retry can
// succeed. Backpressure is Unavailable, not ResourceExhausted: OTLP
// exporters retry ResourceExhausted only when it carries RetryInfo.
func grpcCode(err error) codes.Code {
	code, _ := classify(err)
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, errMediaType), code == http.StatusBadRequest:
		return codes.InvalidArgument
	case code == http.StatusRequestEntityTooLarge:
		return codes.InvalidArgument
	case code == http.StatusTooManyRequests, code == http.StatusServiceUnavailable,
		code == http.StatusInsufficientStorage, code == http.StatusRequestTimeout:
		return codes.Unavailable
	case code == http.StatusNotFound:
		return codes.NotFound
	}
	return codes.Internal
}

// otlpTraces is POST /v1/traces.
func (a *API) otlpTraces(w http.ResponseWriter, r *http.Request) {
	req := ptraceotlp.NewExportRequest()
	a.otlpRequest(w, r, req, func(ctx context.Context) (otlpAnswer, error) {
		return a.exportTraces(ctx, req.Traces(), r.Header.Get(ExperimentHeader))
	})
}

// otlpLogs is POST /v1/logs.
func (a *API) otlpLogs(w http.ResponseWriter, r *http.Request) {
	req := plogotlp.NewExportRequest()
	a.otlpRequest(w, r, req, func(ctx context.Context) (otlpAnswer, error) {
		return a.exportLogs(ctx, req.Logs())
	})
}

// exportTraces stores the events of td's GenAI spans; the answer's partial
// success counts the spans that could not be stored and says why. header
// is the X-Crucible-Experiment of the request.
func (a *API) exportTraces(ctx context.Context, td ptrace.Traces, header string) (ptraceotlp.ExportResponse, error) {
	resp := ptraceotlp.NewExportResponse()
	if err := ctx.Err(); err != nil {
		return resp, err
	}
	if header != "" && !experiment.ValidID(header) {
		return resp, fmt.Errorf("%w: %s %q is not an experiment id", errBadRequest, ExperimentHeader, header)
	}
	now := a.Now()
	batch := otlp.Traces(td, header, now, a.Prices.Table())
	a.otlpStats.countIgnored("traces", batch.Ignored)
	events := make([]*event.Event, len(batch.Events))
	var rejected []experiment.Rejection
	for i := range batch.Events {
		e := &batch.Events[i]
		if e.ExperimentID != "" && !experiment.ValidID(e.ExperimentID) {
			rejected = append(rejected, experiment.Rejection{Index: i, Error: "invalid " + otlp.AttrExperimentID + " " + strconv.Quote(e.ExperimentID)})
			continue
		}
		events[i] = e
	}
	res, err := a.ingestEvents("", events, rejected, now)
	if err != nil {
		return resp, err
	}
	if len(batch.Rejected) > 0 {
		a.results["rejected"].Add(float64(len(batch.Rejected)))
	}
	n := len(batch.Rejected) + len(res.Rejected)
	if n == 0 {
		return resp, nil
	}
	// The reasons in span order, the mapping's and storage's merged.
	var msgs []string
	i, j := 0, 0
	for (i < len(batch.Rejected) || j < len(res.Rejected)) && len(msgs) < maxRejectionMessages {
		if j == len(res.Rejected) || i < len(batch.Rejected) && batch.Rejected[i].Index < batch.Spans[res.Rejected[j].Index] {
			msgs = append(msgs, fmt.Sprintf("span %d: %v", batch.Rejected[i].Index, batch.Rejected[i].Err))
			i++
			continue
		}
		rj := res.Rejected[j]
		msgs = append(msgs, fmt.Sprintf("span %d (event_id %s): %s", batch.Spans[rj.Index], batch.Events[rj.Index].EventID, rj.Error))
		j++
	}
	ps := resp.PartialSuccess()
	ps.SetRejectedSpans(int64(n))
	ps.SetErrorMessage(rejectionMessage(msgs, n))
	return resp, nil
}

func rejectionMessage(msgs []string, n int) string {
	s := strings.Join(msgs, "; ")
	if n > len(msgs) {
		s += fmt.Sprintf("; and %d more", n-len(msgs))
	}
	return s
}

// exportLogs stores the gen_ai.evaluation.result records of ld as scores
// of the spans they name; the partial success counts the ones refused.
func (a *API) exportLogs(ctx context.Context, ld plog.Logs) (plogotlp.ExportResponse, error) {
	resp := plogotlp.NewExportResponse()
	batch := otlp.Logs(ld)
	a.otlpStats.countIgnored("logs", batch.Ignored)
	evs := make([]evalstore.Evaluation, len(batch.Evaluations))
	for i, ev := range batch.Evaluations {
		evs[i] = evalstore.Evaluation{Span: ev.Span, Name: ev.Name, Value: ev.Value, TimestampUs: ev.TimestampUs}
	}
	var refused []evalstore.Rejection
	if len(evs) > 0 {
		var err error
		if refused, err = a.Manager.AddEvaluations(ctx, evs); err != nil {
			return resp, err
		}
	}
	n := len(batch.Rejected) + len(refused)
	a.otlpStats.evaluations.WithLabelValues("accepted").Add(float64(len(evs) - len(refused)))
	a.otlpStats.evaluations.WithLabelValues("rejected").Add(float64(n))
	if n == 0 {
		return resp, nil
	}
	var msgs []string
	for _, r := range batch.Rejected {
		if len(msgs) == maxRejectionMessages {
			break
		}
		msgs = append(msgs, fmt.Sprintf("log record %d: %v", r.Index, r.Err))
	}
	for _, r := range refused {
		if len(msgs) == maxRejectionMessages {
			break
		}
		msgs = append(msgs, fmt.Sprintf("evaluation %s of span %s: %v", evs[r.Index].Name, evs[r.Index].Span.EventID(), r.Err))
	}
	ps := resp.PartialSuccess()
	ps.SetRejectedLogRecords(int64(n))
	ps.SetErrorMessage(rejectionMessage(msgs, n))
	return resp, nil
}
