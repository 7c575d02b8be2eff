package ui

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"

	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// Histogram is the latency distribution of an experiment: how many of its
// stored events with a latency fall in each bin. The API has no
// distribution, and drawing one in the browser would mean sending it every
// event; this counts them where they are, over every stored event as the
// exact analysis does, so the bins add up to the analysis' latency.count.
type Histogram struct {
	Count int64 `json:"count"`
	// Min and Max are the smallest and largest latency (ms), null
	// without events.
	Min *float64 `json:"min"`
	Max *float64 `json:"max"`
	// Width is the width of every bin, a 1, 2 or 5 times a power of ten.
	Width *float64 `json:"width"`
	Bins  []Bin    `json:"bins"`
}

// Bin holds the latencies in [Lower, Upper); the last bin includes its
// upper bound.
type Bin struct {
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	Count int64   `json:"count"`
}

// histogramBins is about how many bins a distribution gets: enough to show
// its shape at a page's width, few enough that each holds events.
const histogramBins = 40

// latencyHistogram bins values (NaN: no latency) into about target bins
// of a round width aligned on multiples of it.
func latencyHistogram(values func(yield func(float64) bool), target int) Histogram {
	h := Histogram{Bins: []Bin{}}
	lo, hi := math.Inf(1), math.Inf(-1)
	for v := range values {
		if math.IsNaN(v) {
			continue
		}
		h.Count++
		lo, hi = min(lo, v), max(hi, v)
	}
	if h.Count == 0 {
		return h
	}
	h.Min, h.Max = &lo, &hi
	width := niceWidth((hi - lo) / float64(target))
	start := math.Floor(lo/width) * width
	n := int(math.Floor((hi-start)/width)) + 1
	if n > 1 && start+float64(n-1)*width >= hi {
		n-- // hi sits exactly on a bin's lower edge: the last bin holds it
	}
	h.Width = &width
	h.Bins = make([]Bin, n)
	for i := range h.Bins {
		h.Bins[i] = Bin{Lower: start + float64(i)*width, Upper: start + float64(i+1)*width}
	}
	for v := range values {
		if math.IsNaN(v) {
			continue
		}
		i := int(math.Floor((v - start) / width))
		i = max(0, min(i, n-1))
		// Rounding in (v-start)/width may put a value a bin off; the
		// edges decide.
		for i > 0 && v < h.Bins[i].Lower {
			i--
		}
		for i < n-1 && v >= h.Bins[i].Upper {
			i++
		}
		h.Bins[i].Count++
	}
	return h
}

// niceWidth is the smallest of 1, 2 or 5 times a power of ten that is at
// least w; 1 when w is 0 (every value equal).
func niceWidth(w float64) float64 {
	if !(w > 0) || math.IsInf(w, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(w)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= w {
			return m * p
		}
	}
	return 10 * p
}

func (h *handler) latencyHistogram(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, "bad_data", "this route takes no query parameters")
		return
	}
	if h.o.Store == nil {
		writeError(w, http.StatusNotFound, "not_found", "no storage")
		return
	}
	id := r.PathValue("id")
	if !experiment.ValidID(id) {
		writeError(w, http.StatusBadRequest, "bad_data", fmt.Sprintf("invalid experiment id %q", id))
		return
	}
	points, err := h.o.Store.Points(r.Context(), id, experiment.Filter{})
	if err != nil {
		code, typ := classify(err)
		if code >= 500 {
			h.o.Logger.Error("latency histogram", "id", id, "err", err)
		}
		writeError(w, code, typ, err.Error())
		return
	}
	hist := latencyHistogram(func(yield func(float64) bool) {
		for i := range points {
			if !yield(points[i].LatencyMs) {
				return
			}
		}
	}, histogramBins)
	writeJSON(w, http.StatusOK, map[string]any{"status": "success", "data": hist})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"status":"error","errorType":"internal","error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b)
}
