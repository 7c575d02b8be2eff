package otlp

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// maxSeed bounds a seed: the fuzzer minimizes every input it finds
// interesting, and minimizing one of several KiB takes it the whole run.
const maxSeed = 2 << 10

// FuzzTraces feeds arbitrary bytes, as OTLP/protobuf and as OTLP/JSON,
// through the mapping: it must never panic, and what it returns must hold
// together (see checkBatch: counts, span key event ids, metadata that is
// valid JSON without message contents). The seeds are the testdata
// payloads, a request per span (with its resource and scope) to keep them
// small.
func FuzzTraces(f *testing.F) {
	for _, tc := range traceCases {
		td := readTraces(f, tc.file)
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					one := ptrace.NewTraces()
					ors := one.ResourceSpans().AppendEmpty()
					rs.Resource().CopyTo(ors.Resource())
					oss := ors.ScopeSpans().AppendEmpty()
					ss.Scope().CopyTo(oss.Scope())
					s.CopyTo(oss.Spans().AppendEmpty())
					req := ptraceotlp.NewExportRequestFromTraces(one)
					addSeeds(f, req.MarshalProto, req.MarshalJSON)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, decode := range []func(ptraceotlp.ExportRequest, []byte) error{
			ptraceotlp.ExportRequest.UnmarshalProto, ptraceotlp.ExportRequest.UnmarshalJSON,
		} {
			req := ptraceotlp.NewExportRequest()
			if decode(req, data) != nil {
				continue
			}
			td := req.Traces()
			checkBatch(t, td, Traces(td, "fuzz", testNow, testPrices))
			checkBatch(t, td, Traces(td, "", testNow, testPrices))
		}
	})
}

// FuzzLogs is FuzzTraces for evaluation log records.
func FuzzLogs(f *testing.F) {
	ld := readLogs(f, "evaluations")
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				one := plog.NewLogs()
				orl := one.ResourceLogs().AppendEmpty()
				rl.Resource().CopyTo(orl.Resource())
				osl := orl.ScopeLogs().AppendEmpty()
				sl.Scope().CopyTo(osl.Scope())
				lr.CopyTo(osl.LogRecords().AppendEmpty())
				req := plogotlp.NewExportRequestFromLogs(one)
				addSeeds(f, req.MarshalProto, req.MarshalJSON)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, decode := range []func(plogotlp.ExportRequest, []byte) error{
			plogotlp.ExportRequest.UnmarshalProto, plogotlp.ExportRequest.UnmarshalJSON,
		} {
			req := plogotlp.NewExportRequest()
			if decode(req, data) != nil {
				continue
			}
			ld := req.Logs()
			checkLogBatch(t, ld, Logs(ld))
		}
	})
}

// addSeeds adds the encodings of a request that are small enough.
func addSeeds(f *testing.F, encodings ...func() ([]byte, error)) {
	f.Helper()
	for _, enc := range encodings {
		data, err := enc()
		if err != nil {
			f.Fatal(err)
		}
		if len(data) <= maxSeed {
			f.Add(data)
		}
	}
}
