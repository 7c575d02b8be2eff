package tsdbstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// The points index keeps, beside the log, what the analysis reads of each
// stored event as one fixed-size record, in log order:
//
//	i64 timestamp µs | f64 latency | f64 cost (NaN when absent) |
//	i64 prompt | i64 completion | i64 total tokens |
//	u32 event | u32 model | u32 provider (ids into points.names; 0 = none) |
//	u8 flags | u24 checksum (CRC-32C of the other 77 bytes, low 24 bits) |
//	u64 end | u32 length | u32 CRC-32C of the event's extra entry
//
// An event with a sample_id, scores or a span key (an event_id that is one,
// event.SpanKeyOf) has an entry in points.extra (length 0 when it has
// none): uvarint length, sample_id | uvarint n | n × (uvarint name id,
// f64 value) | the 24-byte span key when it has one, in log order, so a
// range of points reads one contiguous range of entries; end is where the
// event's entry ends in points.extra (where the last one ended, for an
// event without).
//
// points.names has one name per line, after the hex CRC-32C of the name and
// a space: event names, models, providers and score names.
//
// Reading a million events' numbers from the log means decompressing and
// decoding ~550 MB of records; from the index it is one 64 MB read. The log
// stays the source of truth: when the index does not hold exactly the log's
// events (a crash between the two writes, or a data directory without it),
// Open rebuilds it from the log. Open also rebuilds it when a record or a
// name fails its checksum, or names an id the dictionary lacks; a read
// that meets such damage falls back to the log.

const (
	pointSize   = 80
	pointsFile  = "points.v3.bin"
	extraFile   = "points.v3.extra"
	namesFile   = "points.names"
	flagJudged  = 1 << 0
	flagSuccess = 1 << 1
	flagTokens  = 1 << 2
)

// legacyPointsFiles are the index's files of earlier versions: removed, and
// the index rebuilt from the log. points.bin had 64-byte records and no
// extra file (no sample ids, no scores); v2's extra entries had no span
// keys.
var legacyPointsFiles = []string{"points.bin", "points.v2.bin", "points.v2.extra"}

// Point is what the index holds of one stored event.
type Point struct {
	TimestampUs               int64
	LatencyMs, CostUSD        float64 // NaN when absent
	Judged, Success           bool
	HasTokens                 bool
	Prompt, Completion, Total int64
	Event, Model, Provider    string
	// Sample is the sample_id ("" when none). Sample and Scores alias the
	// reader's buffers: valid only during the visit.
	Sample string
	Scores []event.Score
	// Span is the key of the span the event was mapped from (HasSpan),
	// under which evaluations that arrive apart from it are kept.
	Span    event.SpanKey
	HasSpan bool
	// Cluster is the value of a cluster key, read from the log only
	// (ClusteredPoints); HasCluster is false when the event lacks it.
	Cluster    string
	HasCluster bool
}

type pointIndex struct {
	dir      string
	f        *os.File
	names    *os.File
	extra    *os.File
	extraEnd int64 // bytes of points.extra the records refer to
	ids      map[string]uint32
	list     []string // id-1 → name
	count    int64    // records written
	buf      []byte
	extraBuf []byte
	// damaged says why the files as opened cannot be trusted.
	damaged error
}

func openPointIndex(dir string) (*pointIndex, error) {
	x := &pointIndex{dir: dir, ids: map[string]uint32{}}
	var err error
	if x.names, err = os.OpenFile(filepath.Join(dir, namesFile), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		return nil, err
	}
	// Names may be of any length: read line by line without a bound.
	br := bufio.NewReader(x.names)
	for {
		line, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) {
			if line != "" {
				x.damaged = fmt.Errorf("%s ends in an incomplete line", namesFile)
			}
			break
		}
		if err != nil {
			x.names.Close()
			return nil, err
		}
		name, ok := decodeName(line[:len(line)-1])
		if !ok && x.damaged == nil {
			x.damaged = fmt.Errorf("%s: line %d fails its checksum", namesFile, len(x.list)+1)
		}
		x.list = append(x.list, name)
		x.ids[name] = uint32(len(x.list))
	}
	if _, err := x.names.Seek(0, io.SeekEnd); err != nil {
		x.names.Close()
		return nil, err
	}
	// The index of an earlier version: the log rebuilds this one.
	for _, name := range legacyPointsFiles {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			x.names.Close()
			return nil, err
		}
	}
	if x.extra, err = os.OpenFile(filepath.Join(dir, extraFile), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		x.names.Close()
		return nil, err
	}
	if x.f, err = os.OpenFile(filepath.Join(dir, pointsFile), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		x.names.Close()
		x.extra.Close()
		return nil, err
	}
	fi, err := x.f.Stat()
	if err != nil {
		x.close()
		return nil, err
	}
	x.count = fi.Size() / pointSize
	if fi.Size()%pointSize != 0 && x.damaged == nil {
		x.damaged = fmt.Errorf("%s holds %d bytes, not a whole number of points", pointsFile, fi.Size())
	}
	if _, err := x.f.Seek(x.count*pointSize, io.SeekStart); err != nil {
		x.close()
		return nil, err
	}
	if err := x.openExtra(); err != nil {
		x.close()
		return nil, err
	}
	return x, nil
}

// openExtra finds where the last point's extra entry ends: entries past it
// (written before a crash kept their points) are cut.
func (x *pointIndex) openExtra() error {
	x.extraEnd = 0
	if x.count > 0 {
		var rec [pointSize]byte
		if _, err := x.f.ReadAt(rec[:], (x.count-1)*pointSize); err != nil {
			return err
		}
		end := int64(binary.LittleEndian.Uint64(rec[64:]))
		if sum := uint32(rec[61]) | uint32(rec[62])<<8 | uint32(rec[63])<<16; sum != pointChecksum(rec[:]) || end < 0 {
			// Nothing to cut by: the rebuild from the log starts afresh.
			if x.damaged == nil {
				x.damaged = fmt.Errorf("%s: the last point fails its checksum", pointsFile)
			}
			return nil
		}
		x.extraEnd = end
	}
	fi, err := x.extra.Stat()
	if err != nil {
		return err
	}
	switch {
	case fi.Size() < x.extraEnd:
		if x.damaged == nil {
			x.damaged = fmt.Errorf("%s holds %d bytes, the points refer to %d", extraFile, fi.Size(), x.extraEnd)
		}
		x.extraEnd = fi.Size()
	case fi.Size() > x.extraEnd:
		if err := x.extra.Truncate(x.extraEnd); err != nil {
			return err
		}
	}
	_, err = x.extra.Seek(x.extraEnd, io.SeekStart)
	return err
}

func encodeName(b []byte, name string) []byte {
	b = fmt.Appendf(b, "%08x ", crc32.Checksum([]byte(name), castagnoli))
	b = append(b, name...)
	return append(b, '\n')
}

func decodeName(line string) (string, bool) {
	if len(line) < 9 || line[8] != ' ' {
		return line, false
	}
	// Only the form encodeName writes is accepted (lowercase hex), so an
	// accepted file is exactly what would be written again.
	for _, c := range []byte(line[:8]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return line, false
		}
	}
	sum, err := strconv.ParseUint(line[:8], 16, 32)
	name := line[9:]
	return name, err == nil && uint32(sum) == crc32.Checksum([]byte(name), castagnoli)
}

func pointChecksum(rec []byte) uint32 {
	return crc32.Update(crc32.Checksum(rec[:61], castagnoli), castagnoli, rec[64:pointSize]) & 0xffffff
}

// check tells why the index does not hold exactly the log's count events
// whole, or nil when it does. It reads the whole index once.
func (x *pointIndex) check(count int64) error {
	if x.damaged != nil {
		return x.damaged
	}
	if x.count != count {
		return fmt.Errorf("%s holds %d events, the log %d", pointsFile, x.count, count)
	}
	return x.read(x.count, x.list, func(*Point) error { return nil })
}

// reset empties the index before a rebuild.
func (x *pointIndex) reset() error {
	for _, f := range []*os.File{x.f, x.names, x.extra} {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	x.ids, x.list, x.count, x.damaged, x.extraEnd = map[string]uint32{}, nil, 0, nil, 0
	return nil
}

// id returns name's id, appending new names to the dictionary.
func (x *pointIndex) id(name string, newNames *[]byte) uint32 {
	if name == "" {
		return 0
	}
	if id, ok := x.ids[name]; ok {
		return id
	}
	// Names come from validated events: event names are [A-Za-z0-9_.];
	// models and providers may hold anything but a newline is replaced.
	clean := strings.ReplaceAll(name, "\n", " ")
	x.list = append(x.list, clean)
	id := uint32(len(x.list))
	x.ids[name] = id
	*newNames = encodeName(*newNames, clean)
	return id
}

// add encodes the points of events (in log order) and writes them: the new
// names first, so that no record refers to a name the dictionary lacks.
func (x *pointIndex) add(events []*event.Event) error {
	var newNames []byte
	b := x.buf[:0]
	extra := x.extraBuf[:0]
	for _, e := range events {
		// The record is written in place: a local array would escape
		// (pointChecksum takes a slice) and cost an allocation an event.
		b = slices.Grow(b, pointSize)
		rec := b[len(b) : len(b)+pointSize]
		clear(rec)
		binary.LittleEndian.PutUint64(rec[0:], uint64(e.Timestamp))
		lat, cost := math.NaN(), math.NaN()
		if e.LatencyMs.Valid {
			lat = e.LatencyMs.V
		}
		if e.CostUSD.Valid {
			cost = e.CostUSD.V
		}
		binary.LittleEndian.PutUint64(rec[8:], math.Float64bits(lat))
		binary.LittleEndian.PutUint64(rec[16:], math.Float64bits(cost))
		var flags byte
		if t := e.Tokens; t != nil {
			flags |= flagTokens
			binary.LittleEndian.PutUint64(rec[24:], uint64(t.Prompt.V))
			binary.LittleEndian.PutUint64(rec[32:], uint64(t.Completion.V))
			binary.LittleEndian.PutUint64(rec[40:], uint64(t.Total.V))
		}
		binary.LittleEndian.PutUint32(rec[48:], x.id(e.EventName, &newNames))
		binary.LittleEndian.PutUint32(rec[52:], x.id(e.Model.V, &newNames))
		binary.LittleEndian.PutUint32(rec[56:], x.id(e.Provider.V, &newNames))
		if e.Success.Valid {
			flags |= flagJudged
			if e.Success.V {
				flags |= flagSuccess
			}
		}
		rec[60] = flags
		span, hasSpan := event.SpanKeyOf(e.EventID)
		if e.SampleID.Valid || len(e.Scores) > 0 || hasSpan {
			start := len(extra)
			extra = binary.AppendUvarint(extra, uint64(len(e.SampleID.V)))
			extra = append(extra, e.SampleID.V...)
			extra = binary.AppendUvarint(extra, uint64(len(e.Scores)))
			for _, s := range e.Scores {
				extra = binary.AppendUvarint(extra, uint64(x.id(s.Name, &newNames)))
				extra = binary.LittleEndian.AppendUint64(extra, math.Float64bits(s.Value))
			}
			if hasSpan {
				extra = append(extra, span[:]...)
			}
			entry := extra[start:]
			binary.LittleEndian.PutUint32(rec[72:], uint32(len(entry)))
			binary.LittleEndian.PutUint32(rec[76:], crc32.Checksum(entry, castagnoli))
		}
		binary.LittleEndian.PutUint64(rec[64:], uint64(x.extraEnd)+uint64(len(extra)))
		sum := pointChecksum(rec)
		rec[61], rec[62], rec[63] = byte(sum), byte(sum>>8), byte(sum>>16)
		b = b[:len(b)+pointSize]
	}
	x.buf, x.extraBuf = b, extra
	if len(newNames) > 0 {
		if _, err := x.names.Write(newNames); err != nil {
			return fmt.Errorf("write %s: %w", namesFile, err)
		}
	}
	// Entries before the points that refer to them, as names before both.
	if len(extra) > 0 {
		if _, err := x.extra.Write(extra); err != nil {
			return fmt.Errorf("write %s: %w", extraFile, err)
		}
		x.extraEnd += int64(len(extra))
	}
	if _, err := x.f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", pointsFile, err)
	}
	x.count += int64(len(events))
	return nil
}

// read calls visit for the first n points. Names are shared strings.
func (x *pointIndex) read(n int64, names []string, visit func(*Point) error) error {
	const chunk = 1 << 14 // points per read
	buf := make([]byte, chunk*pointSize)
	name := func(id uint32) (string, error) {
		if id == 0 {
			return "", nil
		}
		if int(id) > len(names) {
			return "", fmt.Errorf("%w: points index names id %d of %d", ErrCorrupt, id, len(names))
		}
		return names[id-1], nil
	}
	var p Point
	var extra []byte
	var scores []event.Score
	for off := int64(0); off < n; off += chunk {
		m := min(chunk, n-off)
		b := buf[:m*pointSize]
		if _, err := x.f.ReadAt(b, off*pointSize); err != nil {
			return err
		}
		// The chunk's extra entries, one range: from where the entry of
		// the point before the chunk ends to where the chunk's last ends.
		from := int64(0)
		if off > 0 {
			var prev [8]byte
			if _, err := x.f.ReadAt(prev[:], (off-1)*pointSize+64); err != nil {
				return err
			}
			from = int64(binary.LittleEndian.Uint64(prev[:]))
		}
		to := int64(binary.LittleEndian.Uint64(b[(m-1)*pointSize+64:]))
		if to < from || to-from > 64<<20 {
			return fmt.Errorf("%w: %s: points %d to %d refer to extra bytes %d to %d", ErrCorrupt, pointsFile, off, off+m, from, to)
		}
		extra = slices.Grow(extra[:0], int(to-from))[:to-from]
		if _, err := x.extra.ReadAt(extra, from); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, extraFile, err)
		}
		for i := int64(0); i < m; i++ {
			r := b[i*pointSize : (i+1)*pointSize]
			if sum := uint32(r[61]) | uint32(r[62])<<8 | uint32(r[63])<<16; sum != pointChecksum(r) {
				return fmt.Errorf("%w: %s: point %d fails its checksum", ErrCorrupt, pointsFile, off+i)
			}
			flags := r[60]
			p = Point{
				TimestampUs: int64(binary.LittleEndian.Uint64(r[0:])),
				LatencyMs:   math.Float64frombits(binary.LittleEndian.Uint64(r[8:])),
				CostUSD:     math.Float64frombits(binary.LittleEndian.Uint64(r[16:])),
				Judged:      flags&flagJudged != 0, Success: flags&flagSuccess != 0, HasTokens: flags&flagTokens != 0,
				Prompt: int64(binary.LittleEndian.Uint64(r[24:])), Completion: int64(binary.LittleEndian.Uint64(r[32:])),
				Total: int64(binary.LittleEndian.Uint64(r[40:])),
			}
			var err error
			if p.Event, err = name(binary.LittleEndian.Uint32(r[48:])); err != nil {
				return err
			}
			if p.Model, err = name(binary.LittleEndian.Uint32(r[52:])); err != nil {
				return err
			}
			if p.Provider, err = name(binary.LittleEndian.Uint32(r[56:])); err != nil {
				return err
			}
			if length := binary.LittleEndian.Uint32(r[72:]); length > 0 {
				end := int64(binary.LittleEndian.Uint64(r[64:])) - from
				if end < int64(length) || end > int64(len(extra)) {
					return fmt.Errorf("%w: %s: point %d refers to extra bytes out of its range", ErrCorrupt, pointsFile, off+i)
				}
				entry := extra[end-int64(length) : end]
				if crc32.Checksum(entry, castagnoli) != binary.LittleEndian.Uint32(r[76:]) {
					return fmt.Errorf("%w: %s: the entry of point %d fails its checksum", ErrCorrupt, extraFile, off+i)
				}
				if p.Sample, scores, p.Span, p.HasSpan, err = decodeExtra(entry, names, scores[:0]); err != nil {
					return fmt.Errorf("%w: %s: point %d: %w", ErrCorrupt, extraFile, off+i, err)
				}
				p.Scores = scores
			}
			if err := visit(&p); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeExtra reads an extra entry; the sample aliases entry. Only the
// form add writes is accepted.
func decodeExtra(entry []byte, names []string, scores []event.Score) (sample string, _ []event.Score, span event.SpanKey, hasSpan bool, _ error) {
	bad := errMalformedExtra
	n, ok := minimalUvarint(&entry)
	if !ok || uint64(len(entry)) < n {
		return "", nil, span, false, bad
	}
	if n > 0 {
		sample = unsafe.String(&entry[0], n)
	}
	entry = entry[n:]
	count, ok := minimalUvarint(&entry)
	if !ok || count > event.MaxScores {
		return "", nil, span, false, bad
	}
	for range count {
		id, ok := minimalUvarint(&entry)
		if !ok || id == 0 || id > uint64(len(names)) || len(entry) < 8 {
			return "", nil, span, false, bad
		}
		scores = append(scores, event.Score{Name: names[id-1], Value: math.Float64frombits(binary.LittleEndian.Uint64(entry))})
		entry = entry[8:]
	}
	switch len(entry) {
	case 0:
	case len(span):
		copy(span[:], entry)
		hasSpan = true
	default:
		return "", nil, span, false, bad
	}
	return sample, scores, span, hasSpan, nil
}

var errMalformedExtra = errors.New("malformed entry")

// minimalUvarint reads a uvarint in its shortest form off the front of *b.
func minimalUvarint(b *[]byte) (uint64, bool) {
	v, k := binary.Uvarint(*b)
	if k <= 0 || (k > 1 && (*b)[k-1] == 0) {
		return 0, false
	}
	*b = (*b)[k:]
	return v, true
}

func (x *pointIndex) sync() error {
	return errors.Join(x.names.Sync(), x.extra.Sync(), x.f.Sync())
}

func (x *pointIndex) close() error {
	return errors.Join(x.sync(), x.names.Close(), x.extra.Close(), x.f.Close())
}
