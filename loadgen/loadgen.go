// Package loadgen drives a running sidecar with realistic LLM events: NDJSON
// batches over keep-alive connections, reporting throughput, batch latency
// and the sidecar's resident memory.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config of a load run.
type Config struct {
	Target      string // base URL of the sidecar
	Experiment  string
	Events      int64         // stop after this many events (0: no limit)
	Duration    time.Duration // stop after this long (0: no limit)
	Connections int
	BatchSize   int
	// Rate is the target events/s over all connections; 0 sends as fast as
	// the sidecar answers. With a rate, batch latency is measured from each
	// batch's scheduled send time, so a stalled sidecar cannot hide its
	// stall by delaying the batches behind it.
	Rate float64
	// Scores is how many quality scores each event carries (0 to 4).
	Scores int
	// Protocol is "json" (NDJSON batches, the default) or "otlp" (OTLP/HTTP
	// protobuf exports of GenAI spans, OTLPBatch; Scores does not apply).
	Protocol string
}

// Report is the outcome of a run.
type Report struct {
	Events       int64
	Batches      int64
	Errors       int64
	Throttled    int64 // answers 429 or 503 with Retry-After, waited out and sent again
	Elapsed      time.Duration
	EventsPerSec float64
	P50, P99     time.Duration
	SidecarRSS   float64 // bytes, from the sidecar's process_resident_memory_bytes
}

func (r Report) String() string {
	return fmt.Sprintf("events=%d batches=%d errors=%d throttled=%d elapsed=%s events/s=%.0f batch_p50=%s batch_p99=%s sidecar_rss=%.1fMiB",
		r.Events, r.Batches, r.Errors, r.Throttled, r.Elapsed.Round(time.Millisecond), r.EventsPerSec,
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.SidecarRSS/(1<<20))
}

var models = []struct{ model, provider string }{
	{"gpt-4o", "openai"}, {"gpt-4o-mini", "openai"},
	{"claude-sonnet-4-5", "anthropic"}, {"gemini-2.5-flash", "google"},
}

var responses = []string{
	"The capital of France is Paris. It has been the country's capital since the 10th century and is its largest city.",
	"Here is a summary of the document: the proposal improves retrieval quality by re-ranking candidates with a cross-encoder.",
	"def add(a, b):\n    return a + b\n\nThis function returns the sum of its two arguments.",
}

// Batch appends one NDJSON batch of n events stamped just before nowUs.
func Batch(b []byte, rng *rand.Rand, n int, nowUs int64) []byte {
	return BatchWith(b, rng, n, nowUs, BatchOptions{})
}

// BatchOptions vary the events of a batch.
type BatchOptions struct {
	// Scores is how many quality scores each event carries (SPEC §13), at
	// most four: exact_match (a boolean), then judge grades in [0, 1].
	Scores int
	// Samples is how many distinct sample_ids the events draw from
	// (default 5000).
	Samples int
}

// scoreNames are the quality scores a scored batch carries, in order.
var scoreNames = []string{"exact_match", "judge.helpfulness", "judge.faithfulness", "rouge_l"}

// BatchWith is Batch with opts.
func BatchWith(b []byte, rng *rand.Rand, n int, nowUs int64, opts BatchOptions) []byte {
	scores := min(opts.Scores, len(scoreNames))
	samples := opts.Samples
	if samples <= 0 {
		samples = 5000
	}
	for i := range n {
		m := models[rng.IntN(len(models))]
		prompt := 200 + rng.IntN(1800)
		completion := 20 + rng.IntN(600)
		durNs := int64(200e6 + rng.ExpFloat64()*800e6)
		b = append(b, `{"event_name":"req_llm.request.stop","timestamp":`...)
		b = strconv.AppendInt(b, nowUs-int64(n-i)*4, 10)
		for k := range scores {
			if k == 0 {
				b = append(b, `,"scores":{"`...)
			} else {
				b = append(b, `,"`...)
			}
			b = append(b, scoreNames[k]...)
			b = append(b, `":`...)
			if k == 0 {
				b = strconv.AppendBool(b, rng.IntN(4) != 0)
			} else {
				b = strconv.AppendFloat(b, float64(rng.IntN(101))/100, 'g', -1, 64)
			}
			if k == scores-1 {
				b = append(b, '}')
			}
		}
		b = append(b, `,"measurements":{"duration":`...)
		b = strconv.AppendInt(b, durNs, 10)
		b = append(b, `},"metadata":{"model":"`...)
		b = append(b, m.model...)
		b = append(b, `","provider":"`...)
		b = append(b, m.provider...)
		b = append(b, `","tokens":{"prompt":`...)
		b = strconv.AppendInt(b, int64(prompt), 10)
		b = append(b, `,"completion":`...)
		b = strconv.AppendInt(b, int64(completion), 10)
		b = append(b, `},"session_id":"s-`...)
		b = strconv.AppendUint(b, rng.Uint64()%100000, 16)
		b = append(b, `","sample_id":"q-`...)
		b = strconv.AppendInt(b, int64(rng.IntN(samples)), 10)
		if rng.IntN(50) == 0 {
			b = append(b, `","error":{"type":"rate_limit","message":"Rate limit reached for requests","status":429}}}`...)
		} else {
			b = append(b, `","response":"`...)
			b = append(b, strings.ReplaceAll(responses[rng.IntN(len(responses))], "\n", `\n`)...)
			b = append(b, `"}}`...)
		}
		b = append(b, '\n')
	}
	return b
}

// Run sends load until the event count or the duration is reached.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Connections <= 0 || cfg.BatchSize <= 0 {
		return Report{}, errors.New("connections and batch size must be > 0")
	}
	if cfg.Events <= 0 && cfg.Duration <= 0 {
		return Report{}, errors.New("set an event count or a duration")
	}
	target := strings.TrimRight(cfg.Target, "/")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Connections, MaxConnsPerHost: cfg.Connections}}
	defer client.CloseIdleConnections() // the transport is Run's own: its keep-alive connections end with it
	if err := createExperiment(ctx, client, target, cfg.Experiment); err != nil {
		return Report{}, err
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	url := target + "/api/v1/experiments/" + cfg.Experiment + "/events"
	send := func(ctx context.Context, body []byte, n int) error { return post(ctx, client, url, body, n) }
	switch cfg.Protocol {
	case "", "json":
	case "otlp":
		url = target + "/v1/traces"
		send = func(ctx context.Context, body []byte, _ int) error { return postOTLP(ctx, client, url, body) }
	default:
		return Report{}, fmt.Errorf("unknown protocol %q: json or otlp", cfg.Protocol)
	}
	var (
		sent, batches, failures, throttled atomic.Int64
		mu                                 sync.Mutex
		latencies                          []time.Duration
		firstErr                           error
		wg                                 sync.WaitGroup
	)
	start := time.Now()
	for c := range cfg.Connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			var body []byte
			var tmpl *otlpTemplate
			var local []time.Duration
			var interval time.Duration
			if cfg.Rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(cfg.BatchSize*cfg.Connections) / cfg.Rate)
			}
			// Connections start spread over one interval.
			next := start.Add(interval * time.Duration(c) / time.Duration(cfg.Connections))
			defer func() {
				mu.Lock()
				latencies = append(latencies, local...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				n := cfg.BatchSize
				if cfg.Events > 0 {
					left := cfg.Events - sent.Add(int64(n))
					if left < 0 {
						n += int(left)
					}
					if n <= 0 {
						return
					}
				}
				t0 := time.Now()
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
					t0 = next
					next = next.Add(interval)
				}
				var err error
				if cfg.Protocol == "otlp" {
					if tmpl == nil || n != cfg.BatchSize {
						tmpl, err = newOTLPTemplate(rng, n, time.Now(), cfg.Experiment)
					}
					if err == nil {
						body = tmpl.batch(body, rng, time.Now())
					}
				} else {
					body = BatchWith(body[:0], rng, n, time.Now().UnixMicro(), BatchOptions{Scores: cfg.Scores})
				}
				if err == nil {
					err = send(ctx, body, n)
				}
				// Backpressure: wait as the sidecar asks, then send the
				// same batch again, as a well-behaved client does.
				for wait := (*throttle)(nil); errors.As(err, &wait) && ctx.Err() == nil; {
					throttled.Add(1)
					select {
					case <-time.After(wait.after):
					case <-ctx.Done():
					}
					err = send(ctx, body, n)
				}
				if ctx.Err() != nil {
					return
				}
				local = append(local, time.Since(t0))
				batches.Add(1)
				if cfg.Events <= 0 {
					sent.Add(int64(n))
				}
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep := Report{Batches: batches.Load(), Errors: failures.Load(), Throttled: throttled.Load(), Elapsed: elapsed}
	rep.Events = (rep.Batches - rep.Errors) * int64(cfg.BatchSize)
	if cfg.Events > 0 {
		rep.Events = min(rep.Events, cfg.Events)
	}
	rep.EventsPerSec = float64(rep.Events) / elapsed.Seconds()
	slices.Sort(latencies)
	if len(latencies) > 0 {
		rep.P50 = latencies[len(latencies)/2]
		rep.P99 = latencies[min(len(latencies)-1, len(latencies)*99/100)]
	}
	rep.SidecarRSS, _ = scrapeRSS(client, target)
	return rep, firstErr
}

func createExperiment(ctx context.Context, client *http.Client, target, id string) error {
	body := fmt.Sprintf(`{"id":%q,"name":"load generator","condition":"load","tags":["loadgen"]}`, id)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target+"/api/v1/experiments", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("create experiment: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("create experiment: %s: %s", resp.Status, b)
	}
	return nil
}

// throttle is an answer that asks the client to wait and send again.
type throttle struct{ after time.Duration }

func (t *throttle) Error() string { return "throttled: retry after " + t.after.String() }

// maxRetryAfter bounds how long a Retry-After makes a connection wait.
const maxRetryAfter = 5 * time.Second

func post(ctx context.Context, client *http.Client, url string, body []byte, n int) error {
	b, err := postBody(ctx, client, url, "application/x-ndjson", body)
	if err != nil {
		return err
	}
	want := `"accepted":` + strconv.Itoa(n) + `,`
	if !bytes.Contains(b, []byte(want)) {
		return fmt.Errorf("not every event was accepted: %s", b)
	}
	return nil
}

// postBody POSTs body and returns the body of a 200 answer; a 429 or 503 with
// Retry-After is a *throttle, any other answer an error quoting it.
func postBody(ctx context.Context, client *http.Client, url, contentType string, body []byte) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if t := throttled(resp); t != nil {
		return nil, t
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return b, nil
}

// throttled is the wait a 429 or 503 answer with Retry-After asks for; nil
// for any other answer.
func throttled(resp *http.Response) *throttle {
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			return &throttle{after: min(time.Duration(secs)*time.Second, maxRetryAfter)}
		}
	}
	return nil
}

// scrapeRSS reads process_resident_memory_bytes from the sidecar's /metrics.
func scrapeRSS(client *http.Client, target string) (float64, error) {
	resp, err := client.Get(target + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "process_resident_memory_bytes "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("process_resident_memory_bytes not found")
}
