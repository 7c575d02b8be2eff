package query

import (
	"context"
	"net/http"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/util/annotations"
)

// maxBytesInFrame is the size of a streamed remote-read frame, Prometheus'
// default (--storage.remote.read-max-bytes-in-frame).
const maxBytesInFrame = 1 << 20

// RemoteRead serves Prometheus' remote-read protocol over every
// experiment's raw samples, with Prometheus' own handler: streamed XOR
// chunks when the client takes them, else samples. A Prometheus can
// remote_read the sidecar, and a fleet analysis read it as it reads any
// receiver. Its samples limit (of answers of samples) and its concurrency
// are the PromQL API's settings, with a gate of its own.
func (a *API) RemoteRead() http.Handler {
	return remote.NewReadHandler(a.logger.With("component", "remote-read"), nil, remoteQueryable{a.queryable},
		func() config.Config { return config.Config{} }, a.opts.MaxSamples, a.opts.MaxConcurrency, maxBytesInFrame)
}

// remoteQueryable adds the chunk querier the streamed response needs: the
// merged samples cut into chunks again.
type remoteQueryable struct{ Queryable }

func (q remoteQueryable) ChunkQuerier(mint, maxt int64) (storage.ChunkQuerier, error) {
	sq, err := q.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return chunkQuerier{sq}, nil
}

type chunkQuerier struct{ q storage.Querier }

func (c chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.ChunkSeriesSet {
	return storage.NewSeriesSetToChunkSet(c.q.Select(ctx, sortSeries, hints, ms...))
}

func (c chunkQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelValues(ctx, name, hints, ms...)
}

func (c chunkQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return c.q.LabelNames(ctx, hints, ms...)
}

func (c chunkQuerier) Close() error { return c.q.Close() }
