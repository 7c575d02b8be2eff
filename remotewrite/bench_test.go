package remotewrite

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// BenchmarkCatchUp measures how fast a queue sends a backlog of committed
// samples to a loopback receiver that decodes each request (snappy and
// protobuf) and keeps nothing: reading the log, building, compressing and
// sending requests.
//
//	go test ./remotewrite -run '^$' -bench CatchUp -benchtime 3x -count 5
func BenchmarkCatchUp(b *testing.B) {
	t := &testing.T{}
	f := &fixture{t: t, dir: b.TempDir()}
	f.open()
	b.Cleanup(func() { f.m.Close() })
	f.create("bench", "control")
	const events = 100_000
	f.ingest("bench", events)
	var samples atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err == nil {
			err = wr.Unmarshal(raw)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ts := range wr.Timeseries {
			samples.Add(int64(len(ts.Samples)))
		}
	}))
	defer srv.Close()
	cfg, err := Parse([]byte("remote_write:\n- url: "+srv.URL+"/api/v1/write\n"), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	s, err := f.m.Store("bench")
	if err != nil {
		b.Fatal(err)
	}
	mark, _ := s.Committed()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		samples.Store(0)
		w, err := New(cfg, Options{Dir: b.TempDir(), Targets: f.targets, ExternalLabels: labels.FromStrings("pod", "p"),
			Registerer: prometheus.NewRegistry(), Poll: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		w.Start()
		for samples.Load() < mark.Samples {
			time.Sleep(time.Millisecond)
		}
		w.Stop()
	}
	b.ReportMetric(float64(mark.Samples)*float64(b.N)/time.Since(start).Seconds(), "samples/s")
}
