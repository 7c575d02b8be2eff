package tsdbstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// The event log is a directory of numbered segment files of frames. One
// frame holds the records of one append (a request's events), written with
// one write call:
//
//	u32 payload length | u32 CRC-32C of payload | u8 codec | payload
//
// The payload is the records, S2-compressed (codecS2) or not (codecRaw).
// JSON compresses three to four times, which saves disk and write time. Each
// record is
//
//	u32 body length | body
//
// and a body is a fixed header followed by the event's stored form (see
// event.AppendRecord):
//
//	i64 arrival µs | i64 TSDB ms | u64 series hash | u8 slot | u8 flags |
//	[u8 id length | id, when flags has flagClientID] |
//	[uvarint mask of the scores past the cap, when flags has flagScoreOverflow] |
//	stored event
//
// Frames are only appended. A crash can tear the last frame of the last
// segment: Open cuts a bad tail that no good frame follows. Damage that
// good frames follow is skipped, never cut (logscan.go).

const (
	frameHeaderLen = 4 + 4 + 1
	bodyFixedLen   = 8 + 8 + 8 + 1 + 1
	flagClientID   = 1 << 0
	// flagScoreOverflow: a mask of the event's scores stored under
	// event.OverflowValue follows (bit i: Scores[i]).
	flagScoreOverflow = 1 << 4
	segmentSuffix     = ".seg"
	codecRaw          = 0
	codecS2           = 1
	// maxFrame bounds one frame so a corrupt length is recognised.
	maxFrame = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a log record that fails its checks.
var ErrCorrupt = errors.New("corrupt event log record")

// LogRecord is one decoded record of the event log. Data, the event's
// stored form (see event.AppendRecord), aliases the reader's buffer and is
// valid only during the callback that receives it.
type LogRecord struct {
	ArrivalUs  int64
	Ms         int64
	SeriesHash uint64
	Slot       uint8
	Flags      uint8  // which of the event, model and provider labels overflowed
	ClientID   string // set when the client chose the event id
	Data       []byte
	Pos        Position
	// scores are the overflow bits of the event's score names, stored
	// with the record.
	scores event.LabelOverflow
}

// Position addresses a record: its segment and byte offset.
type Position struct {
	Segment int
	Offset  int64
}

// Less orders positions in log order.
func (p Position) Less(q Position) bool {
	return p.Segment < q.Segment || (p.Segment == q.Segment && p.Offset < q.Offset)
}

// appendRecord encodes one record onto b.
func appendRecord(b []byte, arrivalUs, ms int64, seriesHash uint64, slot, overflow uint8, scores event.LabelOverflow, clientID string, data []byte) []byte {
	bodyLen := bodyFixedLen + len(data)
	flags := overflow & labelFlags
	if clientID != "" {
		flags |= flagClientID
		bodyLen += 1 + len(clientID)
	}
	var mask [binary.MaxVarintLen64]byte
	n := 0
	if m := scores.ScoreMask(); m != 0 {
		flags |= flagScoreOverflow
		n = binary.PutUvarint(mask[:], uint64(m))
		bodyLen += n
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(bodyLen))
	b = binary.LittleEndian.AppendUint64(b, uint64(arrivalUs))
	b = binary.LittleEndian.AppendUint64(b, uint64(ms))
	b = binary.LittleEndian.AppendUint64(b, seriesHash)
	b = append(b, slot, flags)
	if clientID != "" {
		b = append(b, byte(len(clientID)))
		b = append(b, clientID...)
	}
	b = append(b, mask[:n]...)
	return append(b, data...)
}

// appendFrame encodes records (from appendRecord) as one frame onto dst.
func appendFrame(dst, records []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderLen)...)
	codec := byte(codecS2)
	dst = append(dst, make([]byte, s2.MaxEncodedLen(len(records)))...)
	enc := s2.Encode(dst[start+frameHeaderLen:], records)
	if len(enc) >= len(records) {
		codec, enc = codecRaw, append(dst[start+frameHeaderLen:start+frameHeaderLen], records...)
	}
	dst = dst[:start+frameHeaderLen+len(enc)]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(enc)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(enc, castagnoli))
	dst[start+8] = codec
	return dst
}

func decodeBody(body []byte, rec *LogRecord) error {
	if len(body) < bodyFixedLen {
		return fmt.Errorf("%w: body of %d bytes", ErrCorrupt, len(body))
	}
	rec.ArrivalUs = int64(binary.LittleEndian.Uint64(body[0:]))
	rec.Ms = int64(binary.LittleEndian.Uint64(body[8:]))
	rec.SeriesHash = binary.LittleEndian.Uint64(body[16:])
	rec.Slot = body[24]
	flags := body[25]
	rec.Flags = flags & labelFlags
	rest := body[bodyFixedLen:]
	rec.ClientID = ""
	if flags&flagClientID != 0 {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return fmt.Errorf("%w: truncated event id", ErrCorrupt)
		}
		rec.ClientID = string(rest[1 : 1+int(rest[0])])
		rest = rest[1+int(rest[0]):]
	}
	rec.scores = 0
	if flags&flagScoreOverflow != 0 {
		m, n := binary.Uvarint(rest)
		if n <= 0 || m == 0 || m >= 1<<event.MaxScores {
			return fmt.Errorf("%w: bad score overflow mask", ErrCorrupt)
		}
		rec.scores = event.ScoreOverflowOf(uint32(m))
		rest = rest[n:]
	}
	rec.Data = rest
	return nil
}

// eventLog appends to the newest segment. Appends are serialised by the
// Store; reads may run concurrently and see only complete records.
type eventLog struct {
	dir         string
	segmentSize int64
	logger      *slog.Logger

	mu      sync.RWMutex // guards the fields below for readers
	current *os.File
	retired []*os.File // full segments not yet fsynced and closed
	seg     int
	size    int64 // bytes of complete, published records in the current segment
	pending int64 // end of the last write, published or not; only the writer uses it
	first   int   // oldest segment number
	damaged map[int][]span
	damage  Damage
}

func segmentName(dir string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("%08d%s", n, segmentSuffix))
}

func listSegments(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(name, segmentSuffix))
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	slices.Sort(segs)
	return segs, nil
}

// openEventLog opens (or creates) the log in dir, cuts a torn tail, and calls
// visit for every record in order so the caller can rebuild its state.
// Damaged frames with good ones after them are skipped, logged and
// remembered, never cut.
func openEventLog(dir string, segmentSize int64, logger *slog.Logger, visit func(*LogRecord) error) (*eventLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		segs = []int{1}
	}
	l := &eventLog{dir: dir, segmentSize: segmentSize, logger: logger, first: segs[0], damaged: map[int][]span{}}
	for i, n := range segs {
		last := i == len(segs)-1
		name := segmentName(dir, n)
		sc, err := scanSegment(name, 0, -1, nil, visit)
		if err != nil {
			return nil, fmt.Errorf("segment %d: %w", n, err)
		}
		for _, d := range sc.damaged {
			l.noteDamage(n, d.span, d.reason)
		}
		if sc.tail != nil {
			if last {
				// Only the segment being written can tear; a tail with no good
				// frame after it is that write, never acknowledged whole.
				logger.Warn("cutting torn tail of event log", "segment", name,
					"valid_bytes", sc.tail.span.Start, "cut_bytes", sc.tail.span.End-sc.tail.span.Start, "reason", sc.tail.reason)
				if err := os.Truncate(name, sc.tail.span.Start); err != nil {
					return nil, fmt.Errorf("cut torn tail: %w", err)
				}
				sc.end = sc.tail.span.Start
			} else {
				l.noteDamage(n, sc.tail.span, sc.tail.reason)
			}
		}
		if last {
			f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, err
			}
			l.current, l.seg, l.size = f, n, sc.end
		}
	}
	return l, SyncDir(dir)
}

func (l *eventLog) noteDamage(seg int, sp span, reason error) {
	l.damaged[seg] = append(l.damaged[seg], sp)
	if l.damage.Frames == 0 {
		l.damage.First = fmt.Sprintf("segment %d, bytes %d-%d: %v", seg, sp.Start, sp.End, reason)
	}
	l.damage.Frames++
	l.damage.Bytes += sp.End - sp.Start
	l.logger.Error("event log is damaged: skipping the damaged bytes and keeping every good frame around them; the files are left as they are",
		"segment", segmentName(l.dir, seg), "offset", sp.Start, "bytes", sp.End-sp.Start, "reason", reason)
}

// Damage reports what Open found damaged.
func (l *eventLog) Damage() Damage {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.damage
}

func segmentNumber(path string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), segmentSuffix))
	return n
}

// write appends a frame with one write call. Readers do not see it until
// publish; undo takes it back out. A failed or short write is cut back so
// the log never holds a partial record in front of later ones. Appends are
// serialised by the Store: each write is followed by publish or undo.
func (l *eventLog) write(buf []byte) error {
	l.mu.RLock()
	f, size := l.current, l.size
	l.mu.RUnlock()
	if size > 0 && size+int64(len(buf)) > l.segmentSize {
		if err := l.rotate(); err != nil {
			return err
		}
		l.mu.RLock()
		f, size = l.current, l.size
		l.mu.RUnlock()
	}
	if _, err := f.Write(buf); err != nil {
		_ = f.Truncate(size)
		return fmt.Errorf("write event log: %w", err)
	}
	l.pending = size + int64(len(buf))
	return nil
}

// publish makes the last write visible to readers and to end.
func (l *eventLog) publish() {
	l.mu.Lock()
	l.size = l.pending
	l.mu.Unlock()
}

// undo cuts the last write off the log, fsyncing the cut when sync is set.
func (l *eventLog) undo(sync bool) error {
	l.mu.RLock()
	f, size := l.current, l.size
	l.mu.RUnlock()
	l.pending = size
	err := f.Truncate(size)
	if err == nil && sync {
		err = f.Sync()
	}
	return err
}

// rotate starts a new segment. The old one is fsynced and closed in the
// background (closeRetired), outside the append path: fsyncing a full
// segment here would stall every request behind it.
func (l *eventLog) rotate() error {
	next, err := os.OpenFile(segmentName(l.dir, l.seg+1), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.retired = append(l.retired, l.current)
	l.current, l.seg, l.size = next, l.seg+1, 0
	l.mu.Unlock()
	return nil
}

// end is the position after the last complete record.
func (l *eventLog) end() Position {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return Position{Segment: l.seg, Offset: l.size}
}

// readRange calls visit for every record from 'from' up to 'to'.
func (l *eventLog) readRange(from, to Position, visit func(*LogRecord) error) error {
	l.mu.RLock()
	first := l.first
	l.mu.RUnlock()
	if from.Segment < first {
		from = Position{Segment: first}
	}
	for seg := from.Segment; seg <= to.Segment; seg++ {
		start, end := int64(0), int64(-1)
		if seg == from.Segment {
			start = from.Offset
		}
		if seg == to.Segment {
			end = to.Offset
		}
		if end >= 0 && start >= end {
			continue
		}
		l.mu.RLock()
		known := l.damaged[seg]
		l.mu.RUnlock()
		if _, err := scanSegment(segmentName(l.dir, seg), start, end, known, visit); err != nil {
			return err
		}
	}
	return nil
}

// sync fsyncs the current segment, and fsyncs and closes retired ones. No
// lock is held while fsyncing, so appends go on meanwhile: rotate never
// closes a file, and close runs only after the last sync.
func (l *eventLog) sync() error {
	l.mu.RLock()
	cur := l.current
	l.mu.RUnlock()
	var err error
	if cur != nil {
		err = cur.Sync()
	}
	return errors.Join(err, l.closeRetired())
}

// closeRetired fsyncs and closes full segments.
func (l *eventLog) closeRetired() error {
	l.mu.RLock()
	retired := l.retired
	l.mu.RUnlock()
	if len(retired) == 0 {
		return nil
	}
	var errs []error
	for _, f := range retired {
		errs = append(errs, f.Sync(), f.Close())
	}
	errs = append(errs, SyncDir(l.dir))
	l.mu.Lock()
	l.retired = l.retired[len(retired):]
	l.mu.Unlock()
	return errors.Join(errs...)
}

func (l *eventLog) close() error {
	serr := l.sync()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.current == nil {
		return serr
	}
	err := errors.Join(serr, l.current.Sync())
	if cerr := l.current.Close(); err == nil {
		err = cerr
	}
	l.current = nil
	return err
}

// SyncDir fsyncs a directory, so that the names of the files created or
// renamed in it outlive a power loss as their contents do.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
