package promsource

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// FuzzAnswer: any answer of a query API gives events or an error, never a
// panic.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"crucible_event_latency_seconds","experiment_id":"a","condition":"c"},"values":[[1700000000.123,"0.25"]]}]}}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"crucible_event_score","score":"judge"},"values":[[1,"NaN"],[2,"+Inf"]]}]}}`))
	f.Add([]byte(`{"status":"error","errorType":"execution","error":"too many samples"}`))
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
		defer srv.Close()
		readAnswer(t, srv.URL, ReadQuery)
	})
}

// FuzzRemoteRead: any remote-read answer, streamed chunks (first byte
// even) or samples (odd), gives events or an error, never a panic.
func FuzzRemoteRead(f *testing.F) {
	series := prompb.Labels{Labels: []prompb.Label{
		{Name: "__name__", Value: "crucible_event_latency_seconds"}, {Name: "condition", Value: "c"}, {Name: "experiment_id", Value: "a"},
	}}
	xor := chunkenc.NewXORChunk()
	app, _ := xor.Appender()
	app.Append(0, 1_700_000_000_123, 0.25)
	app.Append(0, 1_700_000_000_124, 0.5)
	msg, _ := (&prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{
		Labels: series.Labels, Chunks: []prompb.Chunk{{MinTimeMs: 1_700_000_000_123, MaxTimeMs: 1_700_000_000_124, Type: prompb.Chunk_XOR, Data: xor.Bytes()}},
	}}}).Marshal()
	var streamed bytes.Buffer
	remote.NewChunkedWriter(&streamed, nil).Write(msg)
	f.Add(append([]byte{0}, streamed.Bytes()...))
	sampled, _ := (&prompb.ReadResponse{Results: []*prompb.QueryResult{{Timeseries: []*prompb.TimeSeries{{
		Labels: series.Labels, Samples: []prompb.Sample{{Timestamp: 1_700_000_000_123, Value: 0.25}},
	}}}}}).Marshal()
	f.Add(append([]byte{1}, snappy.Encode(nil, sampled)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		ctype := "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
		if b[0]%2 == 1 {
			ctype = "application/x-protobuf"
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Write(b[1:])
		}))
		defer srv.Close()
		readAnswer(t, srv.URL, ReadRemote)
	})
}

func readAnswer(t *testing.T, url, read string) {
	s, err := New(Options{URL: url, Start: time.UnixMilli(1_699_999_000_000), End: time.UnixMilli(1_700_001_000_000), Read: read})
	if err != nil {
		t.Fatal(err)
	}
	x, err := s.Read(context.Background(), "a", Filter{})
	if err == nil && int64(len(x.Points)) > x.Samples {
		t.Fatalf("%d events from %d samples", len(x.Points), x.Samples)
	}
}
