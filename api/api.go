package api

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/query"
)

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
	Reload func() error
	// PromQL, when set, serves Prometheus' query API under /prometheus.
	PromQL     *query.API
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
	// otlpStats count what OTLP requests held that is not an event.
	otlpStats otlpMetrics
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
	a.otlpStats = newOTLPMetrics(o.Registerer, func() *evalstore.Store {
		if o.Manager == nil {
			return nil
		}
		return o.Manager.Evaluations()
	})
	a.results = make(map[string]prometheus.Counter, len(ingestResults))
	for _, r := range ingestResults {
		a.results[r] = a.ingested.WithLabelValues(r)
	}
	return a
}
