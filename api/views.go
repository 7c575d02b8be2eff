package api

import (
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/collector"
	"github.com/crucible-telemetry/crucible-telemetry/event"
)

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
