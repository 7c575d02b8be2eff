// Package export writes stored events as CSV, JSONL or one JSON array
// (SPEC §9). It streams: each event is written as it comes; the caller
// hands the events in order.
package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Formats names the formats.
var Formats = []string{"csv", "jsonl", "json"}

// ErrFormat marks an unknown format.
var ErrFormat = errors.New("unknown export format")

// ContentType is the media type of a format.
func ContentType(format string) string {
	switch format {
	case "csv":
		return "text/csv; charset=utf-8"
	case "jsonl":
		return "application/x-ndjson"
	}
	return "application/json"
}

// Writer writes events one at a time.
type Writer interface {
	Write(e *event.Event) error
	Close() error
}

// New returns a writer of format on w. columns is the CSV header (see
// Columns); other formats ignore it.
func New(w io.Writer, format string, columns []string, flatten bool) (Writer, error) {
	switch format {
	case "jsonl":
		return &jsonl{w: w}, nil
	case "json":
		return &jsonArray{w: w}, nil
	case "csv":
		cw := &csvWriter{w: csv.NewWriter(w), columns: columns, flatten: flatten, index: map[string]int{}}
		for i, c := range columns {
			cw.index[c] = i
		}
		cw.row = make([]string, len(columns))
		return cw, cw.w.Write(columns)
	}
	return nil, fmt.Errorf("%w %q (use csv, jsonl or json)", ErrFormat, format)
}

type jsonl struct {
	w   io.Writer
	buf []byte
}

func (j *jsonl) Write(e *event.Event) error {
	j.buf = append(e.AppendJSON(j.buf[:0]), '\n')
	_, err := j.w.Write(j.buf)
	return err
}

func (j *jsonl) Close() error { return nil }

// jsonArray is one pretty-printed JSON array.
type jsonArray struct {
	w      io.Writer
	n      int
	buf    []byte
	pretty bytes.Buffer
}

func (j *jsonArray) Write(e *event.Event) error {
	sep := ",\n"
	if j.n == 0 {
		sep = "[\n"
	}
	j.n++
	j.buf = e.AppendJSON(j.buf[:0])
	j.pretty.Reset()
	j.pretty.WriteString(sep + "  ")
	if err := json.Indent(&j.pretty, j.buf, "  ", "  "); err != nil {
		return err
	}
	_, err := j.w.Write(j.pretty.Bytes())
	return err
}

func (j *jsonArray) Close() error {
	end := "\n]\n"
	if j.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(j.w, end)
	return err
}

// BaseColumns are the CSV columns of every event.
var BaseColumns = []string{
	"event_id", "experiment_id", "experiment_name", "condition", "timestamp", "datetime", "event_name",
	"latency_ms", "cost_usd", "success", "model", "provider", "sample_id", "session_id", "user_id", "cohort", "tags",
}

// flattener walks metadata and measurements into flattened columns. It
// keeps its parser and the names it built: the same few keys recur in every
// event, and building each name anew was much of a CSV export's garbage.
type flattener struct {
	p     fastjson.Parser
	names map[string]map[string]string // parent → key → parent_key
}

const maxFlattenedNames = 1 << 14

func (fl *flattener) name(parent string, k []byte) string {
	children := fl.names[parent]
	if n, ok := children[string(k)]; ok {
		return n
	}
	n := parent + "_" + string(k)
	if len(fl.names) < maxFlattenedNames {
		if fl.names == nil {
			fl.names = map[string]map[string]string{}
		}
		if children == nil {
			children = map[string]string{}
			fl.names[parent] = children
		}
		children[string(k)] = n
	}
	return n
}

// ColumnSet collects the union of the rows' CSV columns.
type ColumnSet struct {
	flatten bool
	set     map[string]struct{}
	fl      flattener
}

// NewColumnSet returns a set holding the base columns.
func NewColumnSet(flatten bool) *ColumnSet {
	c := &ColumnSet{flatten: flatten, set: map[string]struct{}{}}
	for _, b := range BaseColumns {
		c.set[b] = struct{}{}
	}
	return c
}

// Add adds the columns of e's row.
func (c *ColumnSet) Add(e *event.Event) error {
	if !c.flatten {
		return nil
	}
	return c.fl.flatten(e, func(key string, _ *fastjson.Value) {
		if _, ok := c.set[key]; !ok {
			c.set[key] = struct{}{}
		}
	})
}

// Header is the CSV header: the sorted union of every row's columns.
func (c *ColumnSet) Header() []string {
	cols := make([]string, 0, len(c.set))
	for col := range c.set {
		cols = append(cols, col)
	}
	slices.Sort(cols)
	return cols
}

// flattenObjects calls f for each leaf of e's metadata and measurements:
// nested keys joined with "_", lists of scalars as one leaf. Without the
// objects decoded, it reads them from the client's JSON in one parse.
func (fl *flattener) flatten(e *event.Event, f func(key string, v *fastjson.Value)) error {
	if e.Metadata == nil && e.Measurements == nil && len(e.Raw) > 0 {
		v, err := fl.p.ParseBytes(e.Raw)
		if err != nil {
			return err
		}
		for _, obj := range [...]struct{ prefix, key string }{{"metadata", "metadata"}, {"measurement", "measurements"}} {
			if x := v.Get(obj.key); x != nil && x.Type() == fastjson.TypeObject {
				fl.walk(obj.prefix, x, f)
			}
		}
		return nil
	}
	for _, obj := range []struct {
		prefix string
		raw    []byte
	}{{"metadata", e.Metadata}, {"measurement", e.Measurements}} {
		if len(obj.raw) == 0 {
			continue
		}
		v, err := fl.p.ParseBytes(obj.raw)
		if err != nil {
			return err
		}
		fl.walk(obj.prefix, v, f)
	}
	return nil
}

func (fl *flattener) walk(key string, v *fastjson.Value, f func(string, *fastjson.Value)) {
	if v.Type() == fastjson.TypeObject {
		o, _ := v.Object()
		o.Visit(func(k []byte, child *fastjson.Value) { fl.walk(fl.name(key, k), child, f) })
		return
	}
	f(key, v)
}

type csvWriter struct {
	fl      flattener
	w       *csv.Writer
	columns []string
	index   map[string]int
	row     []string
	flatten bool
}

func fmtFloat(n event.Null[float64]) string {
	if !n.Valid {
		return ""
	}
	return strconv.FormatFloat(n.V, 'g', -1, 64)
}

func (c *csvWriter) set(col, v string) {
	if i, ok := c.index[col]; ok {
		c.row[i] = v
	}
}

func (c *csvWriter) Write(e *event.Event) error {
	clear(c.row)
	c.set("event_id", e.EventID)
	c.set("experiment_id", e.ExperimentID)
	c.set("experiment_name", e.ExperimentName)
	c.set("condition", e.Condition)
	c.set("timestamp", strconv.FormatInt(e.Timestamp, 10))
	c.set("datetime", time.UnixMicro(e.Timestamp).UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	c.set("event_name", e.EventName)
	c.set("latency_ms", fmtFloat(e.LatencyMs))
	c.set("cost_usd", fmtFloat(e.CostUSD))
	if e.Success.Valid {
		c.set("success", strconv.FormatBool(e.Success.V))
	}
	for _, f := range []struct {
		col string
		v   event.Null[string]
	}{{"model", e.Model}, {"provider", e.Provider}, {"sample_id", e.SampleID}, {"session_id", e.SessionID}, {"user_id", e.UserID}, {"cohort", e.Cohort}} {
		c.set(f.col, f.v.V)
	}
	c.set("tags", strings.Join(e.Tags, ";"))
	if c.flatten {
		if err := c.fl.flatten(e, func(key string, v *fastjson.Value) { c.set(key, cell(v)) }); err != nil {
			return err
		}
	}
	return c.w.Write(c.row)
}

// cell renders a leaf: strings as they are, numbers as sent (so they
// round-trip exactly), lists of scalars joined with ",", anything else as
// JSON.
func cell(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return string(b)
	case fastjson.TypeNull:
		return ""
	case fastjson.TypeArray:
		items, _ := v.Array()
		parts := make([]string, len(items))
		for i, it := range items {
			switch it.Type() {
			case fastjson.TypeObject, fastjson.TypeArray:
				return string(v.MarshalTo(nil))
			}
			parts[i] = cell(it)
		}
		return strings.Join(parts, ",")
	}
	return string(v.MarshalTo(nil))
}

func (c *csvWriter) Close() error {
	c.w.Flush()
	return c.w.Error()
}
