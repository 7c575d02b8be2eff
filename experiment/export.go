package experiment

import (
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

// Export writes the experiment's events in (timestamp, event_id) order and
// returns how many it wrote. A CSV header is the sorted union of every
// row's columns, so the events are read twice: once for the columns (while
// sorting), once to write.
func (o *Ordered) Export(w io.Writer, opts ExportOptions) (int64, error) {
	var anon *export.Anonymizer
	if opts.Anonymize != nil {
		anon = export.NewAnonymizer(opts.Anonymize)
	}
	cols := export.NewColumnSet(opts.Flatten)
	var first func(*event.Event) error
	if opts.Format == "csv" {
		first = cols.Add
	}
	var out export.Writer
	start := func() error {
		var err error
		out, err = export.New(w, opts.Format, cols.Header(), opts.Flatten)
		return err
	}
	if opts.Format != "csv" {
		if err := start(); err != nil {
			return 0, err
		}
	}
	var n int64
	// CSV reads metadata and measurements from the client's JSON directly,
	// unless ids must be anonymized in them.
	objects := opts.Format != "csv" || anon != nil
	err := o.Read(opts.Filter, objects, first, func(e *event.Event) error {
		if out == nil {
			if err := start(); err != nil {
				return err
			}
		}
		if anon != nil {
			if err := anon.Apply(e); err != nil {
				return err
			}
		}
		n++
		if opts.Progress != nil && n%100_000 == 0 {
			opts.Progress(n)
		}
		return out.Write(e)
	})
	if err != nil {
		return n, err
	}
	if out == nil { // no events: a CSV is its header
		if err := start(); err != nil {
			return 0, err
		}
	}
	return n, out.Close()
}
