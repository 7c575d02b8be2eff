package tsdbstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Points calls visit for what the analysis needs of every stored event, in
// log order, from the points index (or, should it have failed, the log).
// When it meets damage in the index mid-way it returns ErrIndexDamaged:
// visit has then seen part of the events, and a call again reads the log.
func (s *Store) Points(ctx context.Context, visit func(*Point) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.endRead()
	s.tmu.Lock()
	n, names, ok := s.points.count, s.points.list, s.pointsOK.Load()
	s.tmu.Unlock()
	if !ok {
		return PointsFromLog(func(v func(*LogRecord) error) error { return s.scan(ctx, v) }, visit)
	}
	err := s.points.read(n, names, cancellable(ctx, visit))
	if errors.Is(err, ErrCorrupt) {
		s.pointsOK.Store(false)
		s.logger.Error("the points index is damaged; reading the event log instead until the next start rebuilds it", "err", err)
		return fmt.Errorf("%w: %w", ErrIndexDamaged, err)
	}
	return err
}

// beginRead starts a read that holds the store open: Close waits for it,
// and once Close has begun no read starts. Callers end it with endRead.
func (s *Store) beginRead() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.reads.Add(1)
	s.inReads++
	s.lastRead = time.Now()
	return nil
}

func (s *Store) endRead() {
	s.mu.Lock()
	s.inReads--
	s.lastRead = time.Now()
	s.mu.Unlock()
	s.reads.Done()
}

// cancellable wraps visit so that a long read stops soon after ctx is done.
func cancellable[T any](ctx context.Context, visit func(T) error) func(T) error {
	if ctx.Done() == nil {
		return visit
	}
	n := 0
	return func(v T) error {
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return visit(v)
	}
}

// PointsFromLog calls visit with the point of every record that scan (a
// Store's Scan, or ReadLog on a directory) yields.
func PointsFromLog(scan func(func(*LogRecord) error) error, visit func(*Point) error) error {
	return pointsFromLog(scan, nil, visit)
}

// ClusteredPointsFromLog is PointsFromLog with each point's cluster under
// key (SPEC §14), which the points index does not keep.
func ClusteredPointsFromLog(scan func(func(*LogRecord) error) error, key event.ClusterKey, visit func(*Point) error) error {
	return pointsFromLog(scan, &key, visit)
}

// ClusteredPoints is Points with each point's cluster under key, read from
// the event log.
func (s *Store) ClusteredPoints(ctx context.Context, key event.ClusterKey, visit func(*Point) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.endRead()
	return ClusteredPointsFromLog(func(v func(*LogRecord) error) error { return s.scan(ctx, v) }, key, visit)
}

func pointsFromLog(scan func(func(*LogRecord) error) error, key *event.ClusterKey, visit func(*Point) error) error {
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	objects := key != nil && key.NeedsObjects()
	var p fastjson.Parser
	var e event.Event
	var pt Point
	return scan(func(r *LogRecord) error {
		dec.Reset()
		if err := dec.DecodeRecord(r.Data, &e, objects); err != nil {
			return fmt.Errorf("%w: record at %v: %w", ErrCorrupt, r.Pos, err)
		}
		pt = PointOf(&e)
		if key != nil {
			pt.Cluster, pt.HasCluster = key.Of(&e, &p)
		}
		return visit(&pt)
	})
}

// PointOf is what the points index keeps of e.
func PointOf(e *event.Event) Point {
	p := Point{TimestampUs: e.Timestamp, LatencyMs: math.NaN(), CostUSD: math.NaN(),
		Judged: e.Success.Valid, Success: e.Success.V, Event: e.EventName, Model: e.Model.V, Provider: e.Provider.V,
		Sample: e.SampleID.V, Scores: e.Scores}
	p.Span, p.HasSpan = event.SpanKeyOf(e.EventID)
	if e.LatencyMs.Valid {
		p.LatencyMs = e.LatencyMs.V
	}
	if e.CostUSD.Valid {
		p.CostUSD = e.CostUSD.V
	}
	if t := e.Tokens; t != nil {
		p.HasTokens, p.Prompt, p.Completion, p.Total = true, t.Prompt.V, t.Completion.V, t.Total.V
	}
	return p
}

// Count is the number of events stored.
func (s *Store) Count() int64 { return s.count.Load() }

// DB is the experiment's TSDB, for reading.
func (s *Store) DB() *tsdb.DB { return s.db }

// Scan calls visit for every stored record in log order. Records appended
// while Scan runs are not visited. The store stays open until Scan returns;
// it stops with ctx's error once ctx is done.
func (s *Store) Scan(ctx context.Context, visit func(*LogRecord) error) error {
	if err := s.beginRead(); err != nil {
		return err
	}
	defer s.endRead()
	return s.scan(ctx, visit)
}

func (s *Store) scan(ctx context.Context, visit func(*LogRecord) error) error {
	return s.log.readRange(Position{}, s.log.end(), cancellable(ctx, visit))
}

// Querier reads the TSDB's samples in [mint, maxt] (ms). It holds the store
// open until its Close, so that a query cannot see the TSDB closed or its
// files deleted under it; once Close has begun it returns ErrClosed.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	if err := s.beginRead(); err != nil {
		return nil, err
	}
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		s.endRead()
		return nil, err
	}
	return &readQuerier{Querier: q, done: s.endRead}, nil
}

// readQuerier ends its store read when closed, once however often Close is
// called.
type readQuerier struct {
	storage.Querier
	once sync.Once
	done func()
}

func (q *readQuerier) Close() error {
	err := q.Querier.Close()
	q.once.Do(q.done)
	return err
}
