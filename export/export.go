// Package export writes stored events as CSV, JSONL or one JSON array
// (SPEC §9). It streams: each event is written as it comes; the caller
// hands the events in order.
package export

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

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

// New returns a JSONL or JSON writer on w. A CSV must know its columns
// before its first row: see NewCSV.
func New(w io.Writer, format string) (Writer, error) {
	switch format {
	case "jsonl":
		return &jsonl{w: w}, nil
	case "json":
		return &jsonArray{w: w}, nil
	}
	return nil, fmt.Errorf("%w %q (use csv, jsonl or json)", ErrFormat, format)
}

// NewCSV returns a CSV writer whose header is cols' union of columns, for
// rows written with WriteCells from the cells cols encoded.
func NewCSV(w io.Writer, cols *ColumnSet) (*CSV, error) {
	columns := cols.Header()
	index := make(map[string]int, len(columns))
	for i, col := range columns {
		index[col] = i
	}
	c := &CSV{w: csv.NewWriter(w), row: make([]string, len(columns)), base: make([]int, len(BaseColumns)), cellPos: make([]int, len(cols.names))}
	for i, col := range BaseColumns {
		c.base[i] = index[col] // the header holds every base and cell column
	}
	for id, name := range cols.names {
		c.cellPos[id] = index[name]
	}
	return c, c.w.Write(columns)
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

// ColumnSet collects the union of the rows' CSV columns. AppendCells also
// encodes a row's flattened cells, so that a CSV export parses each event's
// JSON once: while sorting, for the header and the cells together.
type ColumnSet struct {
	flatten bool
	ids     map[string]uint32 // flattened column → id
	names   []string          // id → flattened column
	fl      flattener
	value   []byte
	scores  map[string]string // score name → its column
}

// NewColumnSet returns a set holding the base columns.
func NewColumnSet(flatten bool) *ColumnSet {
	return &ColumnSet{flatten: flatten, ids: map[string]uint32{}}
}

// column returns the id of a row's column key, adding it.
func (c *ColumnSet) column(key string) uint32 {
	id, ok := c.ids[key]
	if !ok {
		id = uint32(len(c.names))
		c.ids[key] = id
		c.names = append(c.names, key)
	}
	return id
}

// AppendCells adds the columns of e's row and appends its cells beyond the
// base columns to dst: for each, the column's id and the cell's text,
// length-prefixed. A score is a column score_<name> (SPEC §13); metadata
// and measurements are flattened only with flatten.
func (c *ColumnSet) AppendCells(dst []byte, e *event.Event) ([]byte, error) {
	for _, s := range e.Scores {
		key, ok := c.scores[s.Name]
		if !ok {
			if c.scores == nil {
				c.scores = map[string]string{}
			}
			key = "score_" + s.Name
			c.scores[s.Name] = key
		}
		c.value = strconv.AppendFloat(c.value[:0], s.Value, 'g', -1, 64)
		dst = binary.AppendUvarint(dst, uint64(c.column(key)))
		dst = binary.AppendUvarint(dst, uint64(len(c.value)))
		dst = append(dst, c.value...)
	}
	if !c.flatten {
		return dst, nil
	}
	err := c.fl.flatten(e, func(key string, v *fastjson.Value) {
		id := c.column(key)
		c.value = appendCell(c.value[:0], v)
		quote := isText(v) && formulaStart(c.value)
		dst = binary.AppendUvarint(dst, uint64(id))
		if quote {
			dst = binary.AppendUvarint(dst, uint64(len(c.value)+1))
			dst = append(dst, '\'')
		} else {
			dst = binary.AppendUvarint(dst, uint64(len(c.value)))
		}
		dst = append(dst, c.value...)
	})
	return dst, err
}

// Header is the CSV header: the sorted union of every row's columns.
func (c *ColumnSet) Header() []string {
	cols := append(slices.Clone(BaseColumns), c.names...)
	slices.Sort(cols)
	return slices.Compact(cols)
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

// CSV writes RFC 4180 rows under a fixed header.
type CSV struct {
	w       *csv.Writer
	base    []int // positions of BaseColumns
	cellPos []int // positions of a ColumnSet's columns by id
	row     []string
	scratch []byte
}

// setBase fills the base columns of e's row. Numbers and times are
// formatted into one buffer per row; the row's strings point into it until
// the row is written.
func (c *CSV) setBase(e *event.Event) {
	clear(c.row)
	c.scratch = c.scratch[:0]
	text := func(appendTo func([]byte) []byte) string {
		start := len(c.scratch)
		c.scratch = appendTo(c.scratch)
		return bytesToString(c.scratch[start:])
	}
	float := func(n event.Null[float64]) string {
		if !n.Valid {
			return ""
		}
		return text(func(b []byte) []byte { return strconv.AppendFloat(b, n.V, 'g', -1, 64) })
	}
	// safe neutralises a text cell; numbers are formatted above it and
	// never pass through it.
	safe := func(s string) string {
		if !formulaStart(s) {
			return s
		}
		return text(func(b []byte) []byte { return append(append(b, '\''), s...) })
	}
	success := ""
	if e.Success.Valid {
		success = strconv.FormatBool(e.Success.V)
	}
	for i, v := range [...]string{ // in the order of BaseColumns
		safe(e.EventID), safe(e.ExperimentID), safe(e.ExperimentName), safe(e.Condition),
		text(func(b []byte) []byte { return strconv.AppendInt(b, e.Timestamp, 10) }),
		text(func(b []byte) []byte {
			return time.UnixMicro(e.Timestamp).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
		}),
		safe(e.EventName), float(e.LatencyMs), float(e.CostUSD), success,
		safe(e.Model.V), safe(e.Provider.V), safe(e.SampleID.V), safe(e.SessionID.V), safe(e.UserID.V), safe(e.Cohort.V),
		safe(strings.Join(e.Tags, ";")),
	} {
		c.row[c.base[i]] = v
	}
}

// bytesToString views b as a string without copying; b must not change
// while the string is in use.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// WriteCells writes e's row with the flattened cells that the ColumnSet
// given to NewCSV encoded.
func (c *CSV) WriteCells(e *event.Event, cells []byte) error {
	c.setBase(e)
	for len(cells) > 0 {
		id, n := binary.Uvarint(cells)
		if n <= 0 || id >= uint64(len(c.cellPos)) {
			return errBadCells
		}
		cells = cells[n:]
		size, n := binary.Uvarint(cells)
		if n <= 0 || size > uint64(len(cells)-n) {
			return errBadCells
		}
		cells = cells[n:]
		c.row[c.cellPos[id]] = bytesToString(cells[:size]) // cells outlive the row
		cells = cells[size:]
	}
	return c.w.Write(c.row)
}

var errBadCells = errors.New("export: malformed cells")

// formulaStart tells whether a spreadsheet would read a cell beginning like
// s as a formula (OWASP's CSV injection list). Such text cells get a
// leading "'", which spreadsheets take as "this is text".
func formulaStart[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// isText tells whether a leaf's cell is text: a string, or a list with a
// string in it. Numbers, booleans and lists of them are left exact.
func isText(v *fastjson.Value) bool {
	switch v.Type() {
	case fastjson.TypeString:
		return true
	case fastjson.TypeArray:
		items, _ := v.Array()
		for _, it := range items {
			if it.Type() != fastjson.TypeNumber && it.Type() != fastjson.TypeTrue && it.Type() != fastjson.TypeFalse && it.Type() != fastjson.TypeNull {
				return true
			}
		}
	}
	return false
}

// cell renders a leaf: strings as they are, numbers as sent (so they
// round-trip exactly), lists of scalars joined with ",", anything else as
// JSON.
func cell(v *fastjson.Value) string { return string(appendCell(nil, v)) }

func appendCell(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return append(dst, b...)
	case fastjson.TypeNull:
		return dst
	case fastjson.TypeArray:
		items, _ := v.Array()
		for _, it := range items {
			if t := it.Type(); t == fastjson.TypeObject || t == fastjson.TypeArray {
				return v.MarshalTo(dst)
			}
		}
		for i, it := range items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCell(dst, it)
		}
		return dst
	}
	return v.MarshalTo(dst)
}

// Close flushes the rows.
func (c *CSV) Close() error {
	c.w.Flush()
	return c.w.Error()
}
