package event

import (
	"bytes"
	"fmt"
	"testing"
)

// benchLines are realistic LLM events of about 450 bytes.
func benchLines() [][]byte {
	var lines [][]byte
	for i := range 100 {
		lines = append(lines, fmt.Appendf(nil, `{"event_name":"req_llm.request.stop","timestamp":%d,"measurements":{"duration":%d},`+
			`"metadata":{"model":"gpt-4o","provider":"openai","tokens":{"prompt":%d,"completion":%d},"session_id":"s-%x","sample_id":"q-%d",`+
			`"response":"Here is a summary of the document: the proposal improves retrieval quality by re-ranking candidates with a cross-encoder."}}`,
			testNow.UnixMicro()-int64(i), 200e6+i*1e6, 200+i, 20+i, i*7919, i))
	}
	return lines
}

// BenchmarkParseInto measures decoding and enrichment of one event on the
// ingest path (pooled decoder, shared arena).
func BenchmarkParseInto(b *testing.B) {
	lines := benchLines()
	d := GetDecoder()
	defer PutDecoder(d)
	var e Event
	b.ReportAllocs()
	b.SetBytes(int64(len(bytes.Join(lines, nil)) / len(lines)))
	i := 0
	for b.Loop() {
		if i%1000 == 0 {
			d.arena = d.arena[:0]
		}
		if err := d.ParseInto(&e, lines[i%len(lines)], testNow, testPrices); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkParseForStorage is BenchmarkParseInto the way ingest calls it:
// metadata and measurements stay in the client's bytes. "full-decoder"
// turns the fast path (fast.go) off.
func BenchmarkParseForStorage(b *testing.B) {
	for _, c := range []struct {
		name string
		slow bool
	}{{"fast-path", false}, {"full-decoder", true}} {
		b.Run(c.name, func(b *testing.B) {
			lines := benchLines()
			d := GetDecoder()
			defer PutDecoder(d)
			d.slowOnly = c.slow
			defer func() { d.slowOnly = false }()
			var e Event
			b.ReportAllocs()
			b.SetBytes(int64(len(bytes.Join(lines, nil)) / len(lines)))
			i := 0
			for b.Loop() {
				if err := d.ParseForStorage(&e, lines[i%len(lines)], testNow, testPrices); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkAppendRecord measures the log encoding of one event.
func BenchmarkAppendRecord(b *testing.B) {
	e, err := Parse(benchLines()[0], testNow, testPrices)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	line := benchLines()[0]
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendRecord(buf[:0], line)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkDecodeRecord measures reading the numbers and labels of a stored
// event back (TSDB replay, analysis), without its JSON objects.
func BenchmarkDecodeRecord(b *testing.B) {
	line := benchLines()[0]
	e, err := Parse(line, testNow, testPrices)
	if err != nil {
		b.Fatal(err)
	}
	rec := e.AppendRecord(nil, line)
	d := GetDecoder()
	defer PutDecoder(d)
	var back Event
	b.ReportAllocs()
	for b.Loop() {
		if err := d.DecodeRecord(rec, &back, false); err != nil {
			b.Fatal(err)
		}
	}
}
