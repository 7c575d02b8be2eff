package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// receiver is a remote-write 1.0 receiver that keeps every sample it
// acknowledges, and answers with status while status is not 0.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	status  atomic.Int32
	mu      sync.Mutex
	samples map[string]int // "labels ts value" → times received
	headers http.Header
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, samples: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	if s := r.status.Load(); s != 0 {
		http.Error(w, "not now", int(s))
		return
	}
	if req.Header.Get("Content-Encoding") != "snappy" || req.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		http.Error(w, "not remote-write 1.0", http.StatusBadRequest)
		return
	}
	wr, err := remote.DecodeWriteRequest(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers = req.Header.Clone()
	for _, ts := range wr.Timeseries {
		if !slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
			http.Error(w, "labels not sorted", http.StatusBadRequest)
			return
		}
		var sb strings.Builder
		for _, l := range ts.Labels {
			fmt.Fprintf(&sb, "%s=%q,", l.Name, l.Value)
		}
		for _, s := range ts.Samples {
			r.samples[fmt.Sprintf("%s %d %g", sb.String(), s.Timestamp, s.Value)]++
		}
	}
}

// distinct is how many distinct samples arrived.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}

// url is the receiver's write URL.
func (r *receiver) url() string { return r.srv.URL + "/api/v1/write" }

// counted is crucible_remote_write_samples_total of url and result.
func counted(t *testing.T, reg *prometheus.Registry, url, result string) float64 {
	t.Helper()
	return metric(t, reg, "crucible_remote_write_samples_total", "url", url, "result", result)
}

// forget forgets the samples received so far.
func (r *receiver) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.samples)
}

// received returns the distinct samples and how many arrived more than once.
func (r *receiver) received() (set []string, repeats int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.samples {
		set = append(set, k)
		repeats += n - 1
	}
	slices.Sort(set)
	return set, repeats
}

func (r *receiver) config(t *testing.T, extra string) *Config {
	t.Helper()
	c, err := Parse([]byte("remote_write:\n- url: "+r.url()+"\n"+extra), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type fixture struct {
	t   *testing.T
	dir string
	m   *experiment.Manager
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, dir: t.TempDir()}
	f.open()
	return f
}

// open opens the manager. Its stores keep a small feed, so a queue reads
// some frames from memory and the older ones from the log.
func (f *fixture) open() {
	f.m = experiment.NewManager(experiment.Options{
		Dir: f.dir, Logger: slog.New(slog.DiscardHandler),
		Store: tsdbstore.Options{OutOfOrderWindow: time.Hour, SyncInterval: time.Second, DedupWindow: time.Hour,
			FollowBuffer: 5000, Registerer: prometheus.NewRegistry()},
	})
	if err := f.m.Open(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { f.m.Close() })
}

func (f *fixture) create(id, condition string) {
	f.t.Helper()
	req, err := experiment.DecodeCreateRequest(fmt.Appendf(nil, `{"id":%q,"name":%q,"condition":%q}`, id, id, condition))
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.m.Create(req); err != nil {
		f.t.Fatal(err)
	}
}

// ingest stores n events in experiment id: every number, two scores,
// several models, bursts in one millisecond (slots).
func (f *fixture) ingest(id string, n int) {
	f.t.Helper()
	base := time.Now().Add(-10 * time.Minute).UnixMilli()
	prices := pricing.Default()
	evs := make([]*event.Event, n)
	for i := range evs {
		body := fmt.Sprintf(`{"event_name":"llm.request","timestamp":%d,"latency_ms":%d,"success":%t,`+
			`"metadata":{"model":"gpt-4o-mini","provider":"openai","tokens":{"prompt":%d,"completion":%d}},"scores":{"judge":%g,"exact":%d}}`,
			(base+int64(i/4))*1000, 100+i%50, i%7 != 0, 10+i%3, 20+i%5, float64(i%10)/10, i%2)
		e, err := event.Parse([]byte(body), time.Now(), prices)
		if err != nil {
			f.t.Fatal(err)
		}
		evs[i] = e
	}
	for len(evs) > 0 {
		part := evs[:min(250, len(evs))]
		evs = evs[len(part):]
		if _, err := f.m.Ingest(id, part, time.Now()); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) targets() ([]Target, error) {
	ts, err := f.m.FollowTargets()
	out := make([]Target, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out, err
}

// want is every sample the experiments' TSDBs hold, as the receiver
// records them, with the external labels.
func (f *fixture) want(external labels.Labels, ids ...string) []string {
	f.t.Helper()
	var out []string
	for _, id := range ids {
		s, err := f.m.Store(id)
		if err != nil {
			f.t.Fatal(err)
		}
		q, err := s.Querier(math.MinInt64, math.MaxInt64)
		if err != nil {
			f.t.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+"))
		for set.Next() {
			b := labels.NewBuilder(set.At().Labels())
			external.Range(func(l labels.Label) { b.Set(l.Name, l.Value) })
			var sb strings.Builder
			b.Labels().Range(func(l labels.Label) { fmt.Fprintf(&sb, "%s=%q,", l.Name, l.Value) })
			it := set.At().Iterator(nil)
			for it.Next() == chunkenc.ValFloat {
				ts, v := it.At()
				out = append(out, fmt.Sprintf("%s %d %g", sb.String(), ts, v))
			}
		}
		if err := set.Err(); err != nil {
			f.t.Fatal(err)
		}
		q.Close()
	}
	slices.Sort(out)
	return out
}

func (f *fixture) writer(cfg *Config, reg prometheus.Registerer, external labels.Labels) *Writer {
	f.t.Helper()
	w, err := New(cfg, Options{Dir: filepath.Join(f.dir, "remote-write"), Targets: f.targets, ExternalLabels: external,
		Registerer: reg, Poll: 10 * time.Millisecond})
	if err != nil {
		f.t.Fatal(err)
	}
	w.Start()
	f.t.Cleanup(w.Stop)
	return w
}

// eventually waits for cond, failing after a generous deadline (this is
// not a timing assertion: only a queue that never delivers fails).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string, lbls ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i < len(lbls); i += 2 {
				if have[lbls[i]] != lbls[i+1] {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// Every committed sample of every experiment reaches the receiver once,
// with the external labels, also the samples committed while it runs.
func TestEverySampleArrives(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.create("arm-b", "treatment")
	f.ingest("arm-a", 3000)
	rcv := newReceiver(t)
	reg := prometheus.NewRegistry()
	ext := labels.FromStrings("pod", "crucible-0", "cluster", "eu")
	f.writer(rcv.config(t, "  queue_config: {max_samples_per_send: 700, max_shards: 3}\n"), reg, ext)
	f.ingest("arm-b", 1000)
	f.ingest("arm-a", 500)
	want := f.want(ext, "arm-a", "arm-b")
	eventually(t, "every sample", func() bool { return rcv.distinct() >= len(want) })
	got, repeats := rcv.received()
	if !slices.Equal(got, want) || repeats != 0 {
		t.Fatalf("received %d samples (%d repeated), the TSDBs hold %d", len(got), repeats, len(want))
	}
	url := rcv.url()
	eventually(t, "pending 0", func() bool { return metric(t, reg, "crucible_remote_write_pending_samples", "url", url) == 0 })
	if sent := counted(t, reg, url, "sent"); sent != float64(len(want)) {
		t.Fatalf("sent counter %g, want %d", sent, len(want))
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(""), "crucible_remote_write_last_sent_timestamp_seconds"); err == nil {
		t.Fatal("no last-sent timestamp")
	}
	if ts := metric(t, reg, "crucible_remote_write_last_sent_timestamp_seconds", "url", url); ts < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("last sent timestamp %g", ts)
	}
}

// While the receiver is down nothing is lost and ingest goes on; the queue
// retries, and after the sidecar restarted meanwhile every sample arrives.
func TestReceiverDownAndRestart(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusServiceUnavailable)
	reg := prometheus.NewRegistry()
	cfg := rcv.config(t, "  queue_config: {min_backoff: 5ms, max_backoff: 20ms}\n")
	w := f.writer(cfg, reg, labels.EmptyLabels())
	f.ingest("arm-a", 2000)
	url := rcv.url()
	eventually(t, "retries", func() bool {
		return counted(t, reg, url, "retried") > 0
	})
	eventually(t, "pending samples", func() bool { return metric(t, reg, "crucible_remote_write_pending_samples", "url", url) > 0 })
	w.Stop()
	f.m.Close()

	// The sidecar restarts while the receiver is still down, more events
	// arrive, then the receiver comes back.
	f.open()
	reg = prometheus.NewRegistry()
	f.writer(cfg, reg, labels.EmptyLabels())
	f.ingest("arm-a", 700)
	time.Sleep(50 * time.Millisecond)
	rcv.status.Store(0)
	want := f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "every sample", func() bool { return rcv.distinct() >= len(want) })
	if got, _ := rcv.received(); !slices.Equal(got, want) {
		t.Fatalf("received %d samples, the TSDB holds %d", len(got), len(want))
	}
	eventually(t, "pending 0", func() bool { return metric(t, reg, "crucible_remote_write_pending_samples", "url", url) == 0 })
}

// Positions are kept: a queue that stopped after its receiver acknowledged
// everything sends nothing again when it starts; a lost positions file
// sends everything again, which is harmless.
func TestPositionsSurviveRestart(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.ingest("arm-a", 1500)
	rcv := newReceiver(t)
	cfg := rcv.config(t, "")
	want := f.want(labels.EmptyLabels(), "arm-a")
	url := rcv.url()
	// Stopped once the receiver acknowledged everything: a request whose
	// answer is still on its way is sent again, by design.
	acknowledged := func(reg *prometheus.Registry, n int) func() bool {
		return func() bool {
			return counted(t, reg, url, "sent") == float64(n)
		}
	}
	reg := prometheus.NewRegistry()
	w := f.writer(cfg, reg, labels.EmptyLabels())
	eventually(t, "every sample acknowledged", acknowledged(reg, len(want)))
	w.Stop()
	reg = prometheus.NewRegistry()
	w = f.writer(cfg, reg, labels.EmptyLabels())
	f.ingest("arm-a", 10)
	before := len(want)
	want = f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "the new samples acknowledged", acknowledged(reg, len(want)-before))
	w.Stop()
	if _, repeats := rcv.received(); repeats != 0 {
		t.Fatalf("%d samples sent again after a clean restart", repeats)
	}

	files, _ := filepath.Glob(filepath.Join(f.dir, "remote-write", "*", positionsFile))
	if len(files) != 1 {
		t.Fatalf("positions files %v", files)
	}
	if err := os.WriteFile(files[0], []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.writer(cfg, nil, labels.EmptyLabels())
	eventually(t, "everything again", func() bool { _, repeats := rcv.received(); return repeats >= len(want) })
	if got, repeats := rcv.received(); !slices.Equal(got, want) || repeats != len(want) {
		t.Fatalf("after losing positions: %d distinct, %d repeats; want %d and %d", len(got), repeats, len(want), len(want))
	}
}

// A request the receiver refuses for good is dropped and counted, and the
// samples after it still go.
func TestRefusedRequestsAreDroppedAndCounted(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusBadRequest)
	reg := prometheus.NewRegistry()
	f.writer(rcv.config(t, ""), reg, labels.EmptyLabels())
	f.ingest("arm-a", 100)
	url := rcv.url()
	refused := float64(len(f.want(labels.EmptyLabels(), "arm-a")))
	eventually(t, "rejected", func() bool {
		return counted(t, reg, url, "rejected") == refused
	})
	rcv.status.Store(0)
	f.ingest("arm-a", 10)
	eventually(t, "later samples", func() bool {
		return counted(t, reg, url, "sent") == float64(len(f.want(labels.EmptyLabels(), "arm-a")))-refused
	})
	if r := counted(t, reg, url, "retried"); r != 0 {
		t.Fatalf("a 400 was retried (%g samples)", r)
	}
}

// Headers and HTTP client settings of the endpoint reach the receiver.
func TestHeadersAndAuth(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.ingest("arm-a", 10)
	rcv := newReceiver(t)
	f.writer(rcv.config(t, "  headers: {X-Scope-OrgID: tenant-1}\n  basic_auth: {username: u, password: p}\n"), nil, labels.EmptyLabels())
	eventually(t, "a request", func() bool { return rcv.distinct() > 0 })
	rcv.mu.Lock()
	h := rcv.headers
	rcv.mu.Unlock()
	if h.Get("X-Scope-OrgID") != "tenant-1" || !strings.HasPrefix(h.Get("Authorization"), "Basic ") ||
		!strings.HasPrefix(h.Get("User-Agent"), "crucible-telemetry/") {
		t.Fatalf("headers %v", h)
	}
}

// countingTarget counts how often its store is opened.
type countingTarget struct {
	experiment.FollowTarget
	opened *atomic.Int32
}

func (c countingTarget) Store() (*tsdbstore.Store, error) {
	c.opened.Add(1)
	return c.FollowTarget.Store()
}

// An archived experiment whose samples were all sent is not opened again;
// a deleted one is forgotten.
func TestArchivedAndDeletedExperiments(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.create("arm-b", "control")
	f.ingest("arm-a", 100)
	f.ingest("arm-b", 100)
	if _, err := f.m.Archive("arm-a"); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	cfg := rcv.config(t, "")
	want := f.want(labels.EmptyLabels(), "arm-a", "arm-b")
	w := f.writer(cfg, nil, labels.EmptyLabels())
	eventually(t, "every sample", func() bool { return rcv.distinct() >= len(want) })
	time.Sleep(50 * time.Millisecond) // a few passes: arm-a marked done
	w.Stop()
	f.m.Close()
	f.open()
	if err := f.m.Delete("arm-b"); err != nil {
		t.Fatal(err)
	}
	var opened atomic.Int32
	w, err := New(cfg, Options{Dir: filepath.Join(f.dir, "remote-write"), Poll: 5 * time.Millisecond, Targets: func() ([]Target, error) {
		ts, err := f.m.FollowTargets()
		out := make([]Target, len(ts))
		for i, t := range ts {
			out[i] = countingTarget{t, &opened}
		}
		return out, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	time.Sleep(100 * time.Millisecond)
	w.Stop()
	if n := opened.Load(); n != 0 {
		t.Fatalf("the archived experiment's store was opened %d times after all its samples were sent", n)
	}
	if _, repeats := rcv.received(); repeats != 0 {
		t.Fatalf("%d samples sent again", repeats)
	}
	b, err := os.ReadFile(filepath.Join(queueDir(filepath.Join(f.dir, "remote-write"), cfg.RemoteWrite[0].URL.String()), positionsFile))
	if err != nil || strings.Contains(string(b), "arm-b") || !strings.Contains(string(b), `"done":true`) {
		t.Fatalf("positions %s %v: want arm-a done and arm-b forgotten", b, err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string
	}{
		{"minimal", "remote_write:\n- url: http://r:9090/api/v1/write\n", ""},
		{"every supported field", `remote_write:
- url: https://mimir/api/v1/push
  name: mimir
  remote_timeout: 10s
  headers: {X-Scope-OrgID: team-a}
  basic_auth: {username: u, password: p}
  tls_config: {insecure_skip_verify: true}
  queue_config: {max_samples_per_send: 5000, max_shards: 4, min_backoff: 50ms, max_backoff: 10s, retry_on_http_429: true}
`, ""},
		{"two receivers", "remote_write:\n- url: http://a/api/v1/write\n- url: http://b/api/v1/write\n", ""},
		{"none", "remote_write: []\n", "no remote_write endpoint"},
		{"no url", "remote_write:\n- name: x\n", "url is missing"},
		{"scheme", "remote_write:\n- url: ftp://r/write\n", "scheme must be http or https"},
		{"unknown field", "remote_write:\n- url: http://r/w\n  write_relabel: []\n", "write_relabel"},
		{"unused queue field", "remote_write:\n- url: http://r/w\n  queue_config: {capacity: 10}\n", "queue_config.capacity is not used"},
		{"bad shards", "remote_write:\n- url: http://r/w\n  queue_config: {max_shards: 0}\n", "max_shards must be positive"},
		{"backoffs", "remote_write:\n- url: http://r/w\n  queue_config: {min_backoff: 2s, max_backoff: 1s}\n", "min_backoff <= max_backoff"},
		{"protocol header", "remote_write:\n- url: http://r/w\n  headers: {Content-Encoding: gzip}\n", "set by the remote-write protocol"},
		{"listed twice", "remote_write:\n- url: http://r/w\n- url: http://r/w\n", "listed twice"},
		{"two auths", "remote_write:\n- url: http://r/w\n  basic_auth: {username: u}\n  bearer_token: t\n", "at most one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), t.TempDir())
			if tc.err == "" {
				if err != nil || len(c.RemoteWrite) == 0 {
					t.Fatalf("Parse: %v", err)
				}
				e := c.RemoteWrite[0]
				if e.QueueConfig.MaxSamplesPerSend <= 0 || e.QueueConfig.MaxShards <= 0 || e.RemoteTimeout <= 0 {
					t.Fatalf("defaults not applied: %+v", e)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Parse: %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestExternalLabels(t *testing.T) {
	for _, tc := range []struct{ in, name, value, err string }{
		{"pod=crucible-0", "pod", "crucible-0", ""},
		{"region=eu=west", "region", "eu=west", ""},
		{"pod", "", "", "want NAME=VALUE"},
		{"1pod=x", "", "", "not a label name"},
		{"__name__=x", "", "", "not a label name"},
		{"pod=", "", "", "value is empty"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			name, value, err := ParseExternalLabel(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || name != tc.name || value != tc.value {
				t.Fatalf("%q %q %v", name, value, err)
			}
		})
	}
	u, _ := url.Parse("http://r/w")
	cfg := &Config{RemoteWrite: []*Endpoint{{URL: &config.URL{URL: u}, RemoteTimeout: DefaultRemoteTimeout, QueueConfig: DefaultQueueConfig}}}
	if _, err := New(cfg, Options{Dir: t.TempDir(), ExternalLabels: labels.FromStrings("model", "x")}); err == nil || !strings.Contains(err.Error(), `"model"`) {
		t.Fatalf("an external label named like a series label: %v", err)
	}
}

// An experiment deleted and made again under its id is another log: it is
// sent from its start, even when the old position lies inside the new log.
func TestExperimentMadeAgainUnderItsID(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.ingest("arm-a", 100)
	rcv := newReceiver(t)
	cfg := rcv.config(t, "")
	w := f.writer(cfg, nil, labels.EmptyLabels())
	old := f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "the first experiment's samples", func() bool { return rcv.distinct() >= len(old) })
	w.Stop()

	if err := f.m.Delete("arm-a"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond) // another creation time, as between any two real ones
	f.create("arm-a", "control")
	f.ingest("arm-a", 1000) // its log runs past the old position
	rcv.forget()
	f.writer(cfg, nil, labels.EmptyLabels())
	want := f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "the new experiment's samples", func() bool { return rcv.distinct() >= len(want) })
	if got, _ := rcv.received(); !slices.Equal(got, want) {
		t.Fatalf("received %d distinct samples of the new experiment, want its %d", len(got), len(want))
	}
}

// A positions file written before entries kept creation times is taken as
// the experiments' own, and each entry gains its creation time on the
// first pass, even with nothing to send.
func TestPositionsWithoutCreationTimes(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.ingest("arm-a", 100)
	rcv := newReceiver(t)
	cfg := rcv.config(t, "")
	want := f.want(labels.EmptyLabels(), "arm-a")
	reg := prometheus.NewRegistry()
	w := f.writer(cfg, reg, labels.EmptyLabels())
	// Stopped once acknowledged: a request whose answer is on its way is
	// sent again, by design.
	url := rcv.url()
	eventually(t, "every sample acknowledged", func() bool {
		return counted(t, reg, url, "sent") == float64(len(want))
	})
	w.Stop()
	file := filepath.Join(queueDir(filepath.Join(f.dir, "remote-write"), cfg.RemoteWrite[0].URL.String()), positionsFile)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	created := regexp.MustCompile(`,?"created":\d+`)
	if !created.Match(b) {
		t.Fatalf("positions %s keep no creation time", b)
	}
	if err := os.WriteFile(file, created.ReplaceAll(b, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	w = f.writer(cfg, nil, labels.EmptyLabels())
	eventually(t, "the creation time kept", func() bool {
		b, err := os.ReadFile(file)
		return err == nil && created.Match(b)
	})
	w.Stop()
	if _, repeats := rcv.received(); repeats != 0 {
		t.Fatalf("%d samples sent again: the old entry was not taken as the experiment's", repeats)
	}
}

// Apply (a reload) adds, keeps and removes receivers: one kept goes on from
// its positions and sends nothing again, one added gets every sample, one
// removed stops and loses its series; a configuration that cannot be set
// up changes nothing.
func TestApply(t *testing.T) {
	f := newFixture(t)
	f.create("arm-a", "control")
	f.ingest("arm-a", 300)
	a, b := newReceiver(t), newReceiver(t)
	urlA, urlB := a.url(), b.url()
	parse := func(yaml string) *Config {
		t.Helper()
		c, err := Parse([]byte(yaml), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	reg := prometheus.NewRegistry()
	w := f.writer(a.config(t, ""), reg, labels.EmptyLabels())
	sent := func(url string) float64 { return counted(t, reg, url, "sent") }
	want := f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "every sample acknowledged by A", func() bool { return sent(urlA) == float64(len(want)) })

	if err := w.Apply(parse("remote_write:\n- url: " + urlA + "\n- url: " + urlB + "\n")); err != nil {
		t.Fatal(err)
	}
	f.ingest("arm-a", 10)
	want = f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "every sample at both", func() bool { return a.distinct() >= len(want) && b.distinct() >= len(want) })
	for name, r := range map[string]*receiver{"kept": a, "added": b} {
		if got, repeats := r.received(); !slices.Equal(got, want) || repeats != 0 {
			t.Fatalf("the %s receiver: %d distinct samples, %d repeats; want %d and 0", name, len(got), repeats, len(want))
		}
	}

	// A new receiver that could be set up, then one that cannot: nothing
	// changes, not even a series for the first.
	c := newReceiver(t)
	urlC := c.url()
	bad := parse("remote_write:\n- url: " + urlC + "\n- url: " + urlB + "\n  tls_config: {ca_file: " + filepath.Join(t.TempDir(), "missing.pem") + "}\n")
	if err := w.Apply(bad); err == nil {
		t.Fatal("a configuration whose CA file is missing was applied")
	}
	if v := sent(urlC); !math.IsNaN(v) {
		t.Fatalf("a refused configuration left a series for its new receiver (sent %g)", v)
	}
	eventually(t, "both acknowledged everything", func() bool {
		return sent(urlA) == float64(len(want)) && sent(urlB) == float64(len(want))
	})
	f.ingest("arm-a", 10)
	want = f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "the queues still running after the refused configuration", func() bool {
		return a.distinct() >= len(want) && b.distinct() >= len(want)
	})

	if err := w.Apply(parse("remote_write:\n- url: " + urlB + "\n")); err != nil {
		t.Fatal(err)
	}
	if v := sent(urlA); !math.IsNaN(v) {
		t.Fatalf("the removed receiver's series stay (sent %g)", v)
	}
	before := a.distinct()
	f.ingest("arm-a", 10)
	want = f.want(labels.EmptyLabels(), "arm-a")
	eventually(t, "every sample at B", func() bool { return b.distinct() >= len(want) })
	if a.distinct() != before {
		t.Fatal("the removed receiver still gets samples")
	}
	if c.distinct() != 0 {
		t.Fatal("the receiver of a refused configuration got samples")
	}
	w.Stop()
	if err := w.Apply(parse("remote_write:\n- url: " + urlA + "\n")); !errors.Is(err, errStopped) {
		t.Fatalf("Apply after Stop: %v, want errStopped", err)
	}
}
