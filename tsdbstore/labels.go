package tsdbstore

import (
	"log/slog"

	"github.com/cespare/xxhash/v2"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// DefaultMaxLabelValues caps each label when Options leave it zero.
const DefaultMaxLabelValues = 50

// Flags of a log record saying which of its labels went to
// event.OverflowValue: bits 1 to 3, event.LabelOverflow shifted by one.
// The decision is stored with the event, so that a replay puts the samples
// in the series they were first appended to, whatever the order in which
// concurrent appends reached the cap.
const (
	flagOtherEvent = 1 << (iota + 1) // bit 0 is flagClientID
	flagOtherModel
	flagOtherProvider
	labelFlags = flagOtherEvent | flagOtherModel | flagOtherProvider
)

func overflowOf(flags uint8) event.LabelOverflow { return event.LabelOverflow(flags&labelFlags) >> 1 }

// Overflow is the label-cap decision the record was stored with.
func (r *LogRecord) Overflow() event.LabelOverflow { return overflowOf(r.Flags) | r.scores }

// seriesLabels are the label values of an event's TSDB series.
type seriesLabels struct {
	condition, event, model, provider string
}

// labelCap admits the first max distinct values of each capped label.
type labelCap struct {
	max    int
	seen   [3]map[string]struct{} // event, model, provider
	warned [3]bool
	// hashes are the series seen while the log is read on Open: only a
	// record of a new series needs decoding to learn its values.
	hashes map[uint64]struct{}
	logger *slog.Logger
}

var cappedLabels = [3]string{"event", "model", "provider"}

func newLabelCap(max int, logger *slog.Logger) *labelCap {
	if max <= 0 {
		max = DefaultMaxLabelValues
	}
	c := &labelCap{max: max, hashes: map[uint64]struct{}{}, logger: logger}
	for i := range c.seen {
		c.seen[i] = map[string]struct{}{}
	}
	return c
}

// place decides the series labels of an event about to be stored: known
// values stay, new ones are admitted while there is room, the rest become
// event.OverflowValue. Callers hold the store's lock.
func (c *labelCap) place(condition string, e *event.Event) (seriesLabels, uint8) {
	l := seriesLabels{condition, e.EventName, e.Model.V, e.Provider.V}
	var flags uint8
	for i, v := range [3]*string{&l.event, &l.model, &l.provider} {
		if *v == "" {
			continue
		}
		if _, ok := c.seen[i][*v]; ok {
			continue
		}
		if len(c.seen[i]) < c.max {
			c.seen[i][*v] = struct{}{}
			continue
		}
		if !c.warned[i] {
			c.warned[i] = true
			c.logger.Warn("label value cap reached: further values go to the series labelled "+event.OverflowValue,
				"label", cappedLabels[i], "max", c.max)
		}
		*v = event.OverflowValue
		flags |= flagOtherEvent << i
	}
	return l, flags
}

// stored are the series labels a record was stored with.
func stored(condition string, e *event.Event, flags uint8) seriesLabels {
	l := seriesLabels{condition, e.EventName, e.Model.V, e.Provider.V}
	for i, v := range [3]*string{&l.event, &l.model, &l.provider} {
		if flags&(flagOtherEvent<<i) != 0 {
			*v = event.OverflowValue
		}
	}
	return l
}

// learn counts the values of a stored record, read while opening the log,
// as admitted unless the record says they overflowed.
func (c *labelCap) learn(r *LogRecord, dec *event.Decoder, e *event.Event) error {
	if _, ok := c.hashes[r.SeriesHash]; ok {
		return nil
	}
	c.hashes[r.SeriesHash] = struct{}{}
	if err := dec.DecodeRecordView(r.Data, e, false); err != nil {
		return err
	}
	for i, v := range [3]string{e.EventName, e.Model.V, e.Provider.V} {
		if v != "" && r.Flags&(flagOtherEvent<<i) == 0 {
			c.seen[i][string([]byte(v))] = struct{}{} // a copy: v aliases the log's buffer
		}
	}
	return nil
}

// seriesHash identifies a series (without slot and metric name).
func seriesHash(l seriesLabels) uint64 {
	var d xxhash.Digest
	d.Reset()
	for _, v := range [...]string{l.condition, l.event, l.model, l.provider} {
		_, _ = d.WriteString(v)
		_, _ = d.Write([]byte{0xff})
	}
	return d.Sum64()
}
