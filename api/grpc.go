package api

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may compress with gzip
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// GRPCServer returns the OTLP/gRPC receiver (SPEC §15, on
// --otlp.grpc-listen-address): the trace and logs services of OTLP, with
// the message bound and the ingest slots of the HTTP API.
func (a *API) GRPCServer() *grpc.Server {
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(int(a.MaxRequestBytes))}
	if n := cap(a.slots); n > 0 {
		// A message is decoded before its handler takes a slot: streams
		// per connection bound the messages held beside the slots.
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(n)))
	}
	srv := grpc.NewServer(opts...)
	ptraceotlp.RegisterGRPCServer(srv, &traceService{a: a})
	plogotlp.RegisterGRPCServer(srv, &logsService{a: a})
	return srv
}

type traceService struct {
	ptraceotlp.UnimplementedGRPCServer
	a *API
}

func (s *traceService) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	done, err := s.a.grpcSlot(ctx)
	if err != nil {
		return ptraceotlp.NewExportResponse(), err
	}
	defer done()
	header := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(ExperimentHeader); len(v) > 0 {
			header = v[0]
		}
	}
	resp, err := s.a.exportTraces(ctx, req.Traces(), header)
	return resp, grpcError(err)
}

type logsService struct {
	plogotlp.UnimplementedGRPCServer
	a *API
}

func (s *logsService) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	done, err := s.a.grpcSlot(ctx)
	if err != nil {
		return plogotlp.NewExportResponse(), err
	}
	defer done()
	resp, err := s.a.exportLogs(ctx, req.Logs())
	return resp, grpcError(err)
}

// grpcSlot takes an ingest slot for a gRPC request, as the HTTP API does.
func (a *API) grpcSlot(ctx context.Context) (func(), error) {
	if !a.Manager.Ready() {
		return nil, grpcError(experiment.ErrNotReady)
	}
	done, ok := a.slots.acquire(ctx, time.Now().Add(a.QueueTimeout))
	if !ok {
		return nil, grpcError(fmt.Errorf("%w: %d ingest requests are being stored (--ingest.max-inflight-requests); retry later", errBusy, cap(a.slots)))
	}
	return done, nil
}

func grpcError(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(grpcCode(err), message(err))
}
