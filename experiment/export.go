package experiment

import (
	"context"
	"errors"
	"io"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/export"
)

// ExportOptions choose what Export writes.
type ExportOptions struct {
	Format    string // csv, jsonl or json
	Flatten   bool   // CSV: metadata_* and measurement_* columns
	Anonymize []byte // key; nil leaves user and session ids as they are
	Filter    Filter
	// Progress, when set, is called every 100k events written.
	Progress func(written int64)
}

// Export writes an experiment's events in (timestamp, event_id) order and
// returns how many it wrote (SPEC §9).
func (m *Manager) Export(ctx context.Context, w io.Writer, id string, opts ExportOptions) (int64, error) {
	return exportEvents(ctx, m, w, id, opts)
}

func exportEvents(ctx context.Context, s source, w io.Writer, id string, opts ExportOptions) (int64, error) {
	o, err := s.ordered(id)
	if err != nil {
		return 0, err
	}
	return o.export(ctx, w, opts)
}

// export writes the events in (timestamp, event_id) order. A CSV header is
// the sorted union of every row's columns: while sorting, each event's
// metadata and measurements are flattened once, for the header and into
// cells that travel with the event to its row.
func (o *orderedReader) export(ctx context.Context, w io.Writer, opts ExportOptions) (int64, error) {
	var anon *export.Anonymizer
	if opts.Anonymize != nil {
		anon = export.NewAnonymizer(opts.Anonymize)
	}
	var n int64
	written := func() {
		n++
		if opts.Progress != nil && n%100_000 == 0 {
			opts.Progress(n)
		}
	}
	if opts.Format != "csv" {
		out, err := export.New(w, opts.Format)
		if err != nil {
			return 0, err
		}
		err = o.Read(ctx, readSpec{Filter: opts.Filter, VisitObjects: true, Visit: func(e *event.Event, _ []byte) error {
			if anon != nil {
				if err := anon.Apply(e); err != nil {
					return err
				}
			}
			written()
			return out.Write(e)
		}})
		if err != nil {
			return n, err
		}
		return n, out.Close()
	}

	cols := export.NewColumnSet(opts.Flatten)
	var cells []byte
	var rows *rowWriter
	err := o.Read(ctx, readSpec{
		Filter: opts.Filter,
		// Ids in metadata are anonymized before they become cells.
		AnnotateObjects: anon != nil,
		Annotate: func(e *event.Event) ([]byte, error) {
			if anon != nil {
				if err := anon.Apply(e); err != nil {
					return nil, err
				}
			}
			var err error
			cells, err = cols.AppendCells(cells[:0], e)
			return cells, err
		},
		Visit: func(e *event.Event, cells []byte) error {
			if rows == nil { // the columns are known once the sort has seen every event
				out, err := export.NewCSV(w, cols)
				if err != nil {
					return err
				}
				rows = newRowWriter(out, written)
			}
			if anon != nil {
				anon.ApplyIDs(e)
			}
			return rows.add(e, cells)
		},
	})
	if rows == nil {
		if err != nil {
			return n, err
		}
		// No events: a CSV is its header.
		out, err := export.NewCSV(w, cols)
		if err != nil {
			return 0, err
		}
		return 0, out.Close()
	}
	return n, errors.Join(err, rows.close())
}

// rowWriter formats and writes CSV rows on a goroutine of its own while the
// sorted events are merged and decoded: the two halves of writing a CSV
// take about as long as each other.
type rowWriter struct {
	out     *export.CSV
	free    chan *rowBatch
	full    chan *rowBatch
	done    chan error
	stop    chan struct{} // closed when writing failed
	err     error         // why, set before stop is closed
	cur     *rowBatch
	written func()
}

// rowBatch holds events and their cells. The events' strings are their
// own; the bytes they share with the decoder are dropped.
type rowBatch struct {
	events []event.Event
	cells  []byte
	ends   []int
}

const rowBatchSize, rowBatches = 512, 3

func newRowWriter(out *export.CSV, written func()) *rowWriter {
	rw := &rowWriter{
		out: out, written: written,
		free: make(chan *rowBatch, rowBatches), full: make(chan *rowBatch, rowBatches), done: make(chan error, 1),
		stop: make(chan struct{}),
	}
	for range rowBatches {
		rw.free <- &rowBatch{events: make([]event.Event, 0, rowBatchSize)}
	}
	rw.cur = <-rw.free
	go func() {
		var err error
		for b := range rw.full {
			start := 0
			for i := range b.events {
				if err == nil {
					if err = rw.out.WriteCells(&b.events[i], b.cells[start:b.ends[i]]); err == nil {
						rw.written()
					} else {
						rw.err = err
						close(rw.stop)
					}
				}
				start = b.ends[i]
			}
			b.events, b.cells, b.ends = b.events[:0], b.cells[:0], b.ends[:0]
			rw.free <- b
		}
		if err == nil {
			err = rw.out.Close()
		}
		rw.done <- err
	}()
	return rw
}

func (rw *rowWriter) add(e *event.Event, cells []byte) error {
	b := rw.cur
	b.events = append(b.events, *e)
	last := &b.events[len(b.events)-1]
	last.Raw, last.Metadata, last.Measurements = nil, nil, nil
	b.cells = append(b.cells, cells...)
	b.ends = append(b.ends, len(b.cells))
	if len(b.events) < rowBatchSize {
		return nil
	}
	rw.full <- b
	rw.cur = <-rw.free
	select {
	case <-rw.stop: // a client that went away, say: stop reading
		return rw.err
	default:
		return nil
	}
}

// close writes what is left and waits for the writer.
func (rw *rowWriter) close() error {
	if len(rw.cur.events) > 0 {
		rw.full <- rw.cur
	}
	close(rw.full)
	return <-rw.done
}
