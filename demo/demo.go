// Package demo streams a small, realistic A/B test into a running sidecar:
// a control and a treatment experiment answering the same evaluation
// samples with different models, so that latency, cost and failure rates
// differ between the conditions in ways the comparison can find.
package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Arm is one condition of the demo.
type Arm struct {
	ID, Name, Condition, Model, Provider string
	MedianMs, Sigma                      float64 // log-normal latency
	FailureRate                          float64
	CompletionTokens                     int // mean
	// Quality: a judge's helpfulness grade for an easy sample, and the
	// chance of an exact match. Harder samples score lower in both arms,
	// which is what makes the paired comparison sharper than the unpaired.
	Helpfulness, ExactMatch float64
}

// Arms are the demo's experiments: the treatment is faster and cheaper but
// fails a little more often.
var Arms = []Arm{
	{ID: "demo-control", Name: "Support bot: gpt-4o", Condition: "control", Model: "gpt-4o", Provider: "openai",
		MedianMs: 900, Sigma: 0.45, FailureRate: 0.03, CompletionTokens: 260, Helpfulness: 0.9, ExactMatch: 0.85},
	{ID: "demo-treatment", Name: "Support bot: gpt-4o-mini", Condition: "treatment", Model: "gpt-4o-mini", Provider: "openai",
		MedianMs: 620, Sigma: 0.5, FailureRate: 0.06, CompletionTokens: 240, Helpfulness: 0.87, ExactMatch: 0.8},
}

// Config of a demo run.
type Config struct {
	Target     string        // base URL of the sidecar
	Rate       float64       // events/s per experiment
	Duration   time.Duration // 0: until ctx ends
	SampleSize int           // the experiments' sample_size
	Client     *http.Client
	Log        io.Writer
	Seed       uint64
}

// Run creates the experiments (or finds them from an earlier run) and
// sends events until the duration has passed or ctx ends. It returns how
// many events the sidecar accepted per experiment.
func Run(ctx context.Context, cfg Config) (map[string]int64, error) {
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Rate <= 0 {
		return nil, fmt.Errorf("rate must be > 0, got %v", cfg.Rate)
	}
	target := strings.TrimRight(cfg.Target, "/")
	for _, a := range Arms {
		body, _ := json.Marshal(map[string]any{
			"id": a.ID, "name": a.Name, "condition": a.Condition, "sample_size": cfg.SampleSize,
			"hypothesis": "gpt-4o-mini answers support questions as well as gpt-4o, faster and cheaper",
			"tags":       []string{"demo"},
		})
		code, resp, err := post(ctx, cfg.Client, target+"/api/v1/experiments", "application/json", body)
		if err != nil {
			return nil, err
		}
		switch code {
		case http.StatusOK, http.StatusCreated:
		case http.StatusConflict: // an earlier demo with other settings: keep using it
			fmt.Fprintf(cfg.Log, "experiment %s exists with other settings; sending to it anyway\n", a.ID)
		default:
			return nil, fmt.Errorf("create %s: %d %s", a.ID, code, resp)
		}
	}
	fmt.Fprintf(cfg.Log, "streaming %.0f events/s into each of %s and %s on %s\n", cfg.Rate, Arms[0].ID, Arms[1].ID, target)

	// The duration ends the sending, not a request under way: the events
	// of the last one are counted when the sidecar answers.
	stop := ctx.Done()
	if cfg.Duration > 0 {
		timer := time.NewTimer(cfg.Duration)
		defer timer.Stop()
		loop, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-timer.C:
				cancel()
			case <-loop.Done():
			}
		}()
		stop = loop.Done()
	}
	const tick = 200 * time.Millisecond
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	accepted := map[string]int64{}
	var due float64
	var sample int
	var buf []byte
	for {
		select {
		case <-stop:
			return accepted, nil
		case <-ticker.C:
		}
		due += cfg.Rate * tick.Seconds()
		n := int(due)
		due -= float64(n)
		now := time.Now()
		for _, a := range Arms {
			buf = buf[:0]
			for i := range n {
				buf = a.appendEvent(buf, rng, now.Add(-time.Duration(n-i)*time.Millisecond), sample+i)
			}
			if n == 0 {
				continue
			}
			code, resp, err := post(ctx, cfg.Client, target+"/api/v1/experiments/"+a.ID+"/events", "application/x-ndjson", buf)
			if ctx.Err() != nil {
				return accepted, nil
			}
			if err != nil {
				return accepted, err
			}
			if code != http.StatusOK {
				return accepted, fmt.Errorf("ingest into %s: %d %s", a.ID, code, resp)
			}
			var r struct {
				Data struct {
					Accepted int64 `json:"accepted"`
				} `json:"data"`
			}
			if json.Unmarshal(resp, &r) == nil {
				accepted[a.ID] += r.Data.Accepted
			}
		}
		sample += n
	}
}

// demoSamples is how many evaluation samples the arms cycle through.
const demoSamples = 500

// difficulty is a sample's difficulty in [0, 1), the same in both arms.
func difficulty(sample int) float64 {
	h := uint64(sample%demoSamples)*0x9e3779b97f4a7c15 + 0x7f4a7c15
	h ^= h >> 31
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 29
	return float64(h>>11) / (1 << 53)
}

// appendEvent appends one NDJSON event: both arms answer the same samples
// (sample_id), so a comparison can pair them, and a judge grades each
// answer (scores).
func (a Arm) appendEvent(b []byte, rng *rand.Rand, at time.Time, sample int) []byte {
	latency := a.MedianMs * math.Exp(a.Sigma*rng.NormFloat64())
	prompt := 300 + rng.IntN(900)
	completion := max(1, int(float64(a.CompletionTokens)*(0.5+rng.Float64())))
	ok := rng.Float64() >= a.FailureRate
	b = append(b, `{"event_name":"req_llm.request.stop","timestamp":`...)
	b = strconv.AppendInt(b, at.UnixMicro(), 10)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendFloat(b, math.Round(latency*100)/100, 'f', -1, 64)
	b = append(b, `,"success":`...)
	b = strconv.AppendBool(b, ok)
	d := difficulty(sample)
	helpful := min(1, max(0, a.Helpfulness-0.5*d+0.05*rng.NormFloat64()))
	if !ok {
		helpful = 0
	}
	b = append(b, `,"scores":{"judge.helpfulness":`...)
	b = strconv.AppendFloat(b, math.Round(helpful*1000)/1000, 'f', -1, 64)
	b = append(b, `,"exact_match":`...)
	b = strconv.AppendBool(b, ok && rng.Float64() < a.ExactMatch-0.4*d)
	b = append(b, '}')
	b = append(b, `,"metadata":{"model":"`...)
	b = append(b, a.Model...)
	b = append(b, `","provider":"`...)
	b = append(b, a.Provider...)
	b = append(b, `","sample_id":"q-`...)
	b = strconv.AppendInt(b, int64(sample%demoSamples), 10)
	b = append(b, `","session_id":"s-`...)
	b = strconv.AppendInt(b, int64(rng.IntN(40)), 10)
	b = append(b, `","tokens":{"prompt":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"completion":`...)
	if !ok {
		completion = 0
	}
	b = strconv.AppendInt(b, int64(completion), 10)
	b = append(b, '}')
	if !ok {
		b = append(b, `,"error":"upstream timeout"`...)
	}
	return append(b, "}}\n"...)
}

func post(ctx context.Context, c *http.Client, url, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
