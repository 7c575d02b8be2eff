package promsource

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
		s, err := New(Options{URL: srv.URL, Start: time.UnixMilli(1_699_999_000_000), End: time.UnixMilli(1_700_001_000_000)})
		if err != nil {
			t.Fatal(err)
		}
		x, err := s.Read(context.Background(), "a", Filter{})
		if err == nil && int64(len(x.Points)) > x.Samples {
			t.Fatalf("%d events from %d samples", len(x.Points), x.Samples)
		}
	})
}
