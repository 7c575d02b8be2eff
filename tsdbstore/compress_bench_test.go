package tsdbstore

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/loadgen"
	"github.com/crucible-telemetry/crucible-telemetry/pricing"
)

func benchRecords(b *testing.B) []byte {
	now := time.Now()
	body := loadgen.Batch(nil, rand.New(rand.NewPCG(1, 2)), 1000, now.UnixMicro())
	parts, _ := event.Split(body, true)
	var recs []byte
	for _, p := range parts {
		e, err := event.Parse(p, now, pricing.Default())
		if err != nil {
			b.Fatal(err)
		}
		recs = appendRecord(recs, now.UnixMicro(), now.UnixMilli(), 1, 0, 0, 0, "", e.AppendRecord(nil, p))
	}
	return recs
}

func BenchmarkCompressS2(b *testing.B) {
	recs := benchRecords(b)
	dst := make([]byte, s2.MaxEncodedLen(len(recs)))
	b.SetBytes(int64(len(recs)))
	var n int
	for b.Loop() {
		n = len(s2.Encode(dst, recs))
	}
	b.ReportMetric(float64(len(recs))/float64(n), "ratio")
}

// BenchmarkAppendFrame measures framing a batch's records as ingest does:
// into a reused buffer.
//
//	go test ./tsdbstore -run '^$' -bench AppendFrame -count 5
func BenchmarkAppendFrame(b *testing.B) {
	recs := benchRecords(b)
	var frame []byte
	b.SetBytes(int64(len(recs)))
	for b.Loop() {
		frame = appendFrame(frame[:0], recs)
	}
}

func BenchmarkCompressSnappy(b *testing.B) {
	recs := benchRecords(b)
	dst := make([]byte, snappy.MaxEncodedLen(len(recs)))
	b.SetBytes(int64(len(recs)))
	var n int
	for b.Loop() {
		n = len(snappy.Encode(dst, recs))
	}
	b.ReportMetric(float64(len(recs))/float64(n), "ratio")
}

func BenchmarkCompressZstdFastest(b *testing.B) {
	recs := benchRecords(b)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	var dst []byte
	b.SetBytes(int64(len(recs)))
	for b.Loop() {
		dst = enc.EncodeAll(recs, dst[:0])
	}
	b.ReportMetric(float64(len(recs))/float64(len(dst)), "ratio")
}

// BenchmarkPointsIndexAdd measures indexing events for the analysis.
func BenchmarkPointsIndexAdd(b *testing.B) {
	x, err := openPointIndex(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer x.close()
	now := time.Now()
	body := loadgen.Batch(nil, rand.New(rand.NewPCG(1, 2)), 1000, now.UnixMicro())
	parts, _ := event.Split(body, true)
	evs := make([]*event.Event, len(parts))
	for i, p := range parts {
		if evs[i], err = event.Parse(p, now, pricing.Default()); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if err := x.add(evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}
