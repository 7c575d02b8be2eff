package tsdbstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/s2"
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
//	[u8 id length | id, when flags has flagClientID] | stored event
//
// Frames are only appended. A crash can tear the last frame of the last
// segment; Open finds the first frame that does not check out and cuts the
// file there.

const (
	frameHeaderLen = 4 + 4 + 1
	bodyFixedLen   = 8 + 8 + 8 + 1 + 1
	flagClientID   = 1 << 0
	segmentSuffix  = ".seg"
	codecRaw       = 0
	codecS2        = 1
	// maxFrame bounds one frame so a corrupt length is recognised.
	maxFrame = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a log record that fails its checks.
var ErrCorrupt = errors.New("corrupt event log record")

// Record is one decoded log record. Data, the event's stored form (see
// event.AppendRecord), aliases the reader's buffer and is valid only during
// the callback that receives it.
type Record struct {
	ArrivalUs  int64
	Ms         int64
	SeriesHash uint64
	Slot       uint8
	Flags      uint8  // which of the event, model and provider labels overflowed
	ClientID   string // set when the client chose the event id
	Data       []byte
	Pos        Position
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
func appendRecord(b []byte, arrivalUs, ms int64, seriesHash uint64, slot, overflow uint8, clientID string, data []byte) []byte {
	bodyLen := bodyFixedLen + len(data)
	flags := overflow & labelFlags
	if clientID != "" {
		flags |= flagClientID
		bodyLen += 1 + len(clientID)
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

func decodeBody(body []byte, rec *Record) error {
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
	rec.Data = rest
	return nil
}

// span is a byte range [Start, End) of a segment.
type span struct{ Start, End int64 }

// Damage describes the parts of an event log that do not check out. A
// damaged frame followed by good ones is corruption, not a torn write: every
// good frame is kept and read, the damaged bytes are skipped by every read
// and left in the file, and the damage is reported.
type Damage struct {
	Frames int64  // damaged regions skipped (usually one frame each)
	Bytes  int64  // their size
	First  string // the first of them, described
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
func openEventLog(dir string, segmentSize int64, logger *slog.Logger, visit func(*Record) error) (*eventLog, error) {
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
	return l, syncDir(dir)
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

// damagedSpan is a region that does not check out, and why.
type damagedSpan struct {
	span
	reason error
}

// segmentScan is what a scan of a segment found.
type segmentScan struct {
	end     int64         // offset after the last good frame
	damaged []damagedSpan // damaged regions with a good frame after each
	tail    *damagedSpan  // damage that runs to the end of what was read
}

// scanSegment reads the frames from offset start up to end (-1: to the end
// of the file) and calls visit for each record, skipping the known damaged
// spans. When a frame does not check out, it looks for the next good frame
// after it: if there is one, the bytes between are damage and the scan goes
// on from there; if not, they are the tail. An error is an I/O error or
// one of visit's.
func scanSegment(path string, start, end int64, known []span, visit func(*Record) error) (segmentScan, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return segmentScan{}, nil
	}
	if err != nil {
		return segmentScan{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return segmentScan{}, err
	}
	if end < 0 || end > fi.Size() {
		end = fi.Size()
	}
	var sc segmentScan
	fr := frameReader{seg: segmentNumber(path)}
	for off := start; ; {
		if off >= end {
			sc.end = off
			return sc, nil
		}
		if sp, ok := knownAt(known, off); ok {
			off = min(sp.End, end)
			continue
		}
		n, err := fr.read(f, off, end, visit)
		if err == nil {
			off += n
			sc.end = off
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			return sc, err
		}
		next, ferr := findFrame(f, off+1, end)
		if ferr != nil {
			return sc, ferr
		}
		if next < 0 {
			sc.tail = &damagedSpan{span{off, end}, err}
			return sc, nil
		}
		sc.damaged = append(sc.damaged, damagedSpan{span{off, next}, err})
		off = next
	}
}

func knownAt(known []span, off int64) (span, bool) {
	for _, sp := range known {
		if sp.Start <= off && off < sp.End {
			return sp, true
		}
	}
	return span{}, false
}

// frameReader reads frames, reusing its buffers. It reads the file ahead
// in large blocks: frames are often small.
type frameReader struct {
	seg    int
	buf    []byte // the file from bufOff
	bufOff int64
	raw    []byte
	rec    Record
}

const readAhead = 1 << 20

// at returns n bytes of f at off, valid until the next call.
func (fr *frameReader) at(f *os.File, off, n, end int64) ([]byte, error) {
	if off >= fr.bufOff && off+n <= fr.bufOff+int64(len(fr.buf)) {
		return fr.buf[off-fr.bufOff : off-fr.bufOff+n], nil
	}
	want := min(max(n, readAhead), end-off)
	if int64(cap(fr.buf)) < want {
		fr.buf = make([]byte, want)
	}
	fr.buf = fr.buf[:want]
	m, err := f.ReadAt(fr.buf, off)
	fr.buf, fr.bufOff = fr.buf[:m], off
	if int64(m) < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: file ends at offset %d", ErrCorrupt, off+int64(m))
		}
		return nil, err
	}
	return fr.buf[:n], nil
}

// read checks the frame at off (which must end by end) and calls visit for
// its records; it returns the frame's size. The frame is checked whole
// before any record is visited.
func (fr *frameReader) read(f *os.File, off, end int64, visit func(*Record) error) (int64, error) {
	records, size, err := fr.check(f, off, end)
	if err != nil {
		return 0, err
	}
	fr.rec.Pos = Position{Segment: fr.seg, Offset: off}
	for len(records) > 0 {
		bl := binary.LittleEndian.Uint32(records)
		if err := decodeBody(records[4:4+bl], &fr.rec); err != nil {
			return 0, err
		}
		records = records[4+bl:]
		if visit != nil {
			if err := visit(&fr.rec); err != nil {
				return 0, err
			}
		}
	}
	return size, nil
}

// check reads the frame at off and returns its records once the header,
// checksum, codec and every record's bounds check out.
func (fr *frameReader) check(f *os.File, off, end int64) ([]byte, int64, error) {
	if end-off < frameHeaderLen {
		return nil, 0, fmt.Errorf("%w: short frame header at offset %d", ErrCorrupt, off)
	}
	hdr, err := fr.at(f, off, frameHeaderLen, end)
	if err != nil {
		return nil, 0, err
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:]))
	sum := binary.LittleEndian.Uint32(hdr[4:])
	codec := hdr[8]
	if n > maxFrame || codec > codecS2 {
		return nil, 0, fmt.Errorf("%w: bad frame header at offset %d", ErrCorrupt, off)
	}
	if n > end-off-frameHeaderLen {
		return nil, 0, fmt.Errorf("%w: short frame at offset %d", ErrCorrupt, off)
	}
	payload, err := fr.at(f, off+frameHeaderLen, n, end)
	if err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(payload, castagnoli) != sum {
		return nil, 0, fmt.Errorf("%w: checksum mismatch at offset %d", ErrCorrupt, off)
	}
	records := payload
	if codec == codecS2 {
		if fr.raw, err = s2.Decode(fr.raw[:cap(fr.raw)], payload); err != nil {
			return nil, 0, fmt.Errorf("%w: frame at offset %d: %v", ErrCorrupt, off, err)
		}
		records = fr.raw
	}
	for rest := records; len(rest) > 0; {
		if len(rest) < 4 {
			return nil, 0, fmt.Errorf("%w: truncated record in frame at offset %d", ErrCorrupt, off)
		}
		bl := binary.LittleEndian.Uint32(rest)
		if uint64(bl) > uint64(len(rest)-4) {
			return nil, 0, fmt.Errorf("%w: record overruns frame at offset %d", ErrCorrupt, off)
		}
		if err := decodeBody(rest[4:4+bl], &fr.rec); err != nil {
			return nil, 0, fmt.Errorf("%w at offset %d", err, off)
		}
		rest = rest[4+bl:]
	}
	return records, frameHeaderLen + n, nil
}

// findFrame returns the offset of the first frame at or after from (and
// before end) that checks out whole, or -1. It runs only on damage, reading
// the rest of the segment a window at a time; plausibleFrame keeps it from
// checksumming at every byte.
func findFrame(f *os.File, from, end int64) (int64, error) {
	const window = 1 << 20
	buf := make([]byte, window+peekLen)
	var fr frameReader
	for base := from; base+frameHeaderLen <= end; base += window {
		m := min(int64(len(buf)), end-base)
		if _, err := f.ReadAt(buf[:m], base); err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		for i := int64(0); i < min(window, m-frameHeaderLen+1); i++ {
			if !plausibleFrame(buf[i:m], end-(base+i)) {
				continue
			}
			if _, _, err := fr.check(f, base+i, end); err == nil {
				return base + i, nil
			} else if !errors.Is(err, ErrCorrupt) {
				return -1, err
			}
		}
	}
	return -1, nil
}

// peekLen is how many bytes of a candidate frame plausibleFrame reads.
const peekLen = 64

// Arrival times a record can have: from 1970 to 2200, in µs.
const minArrivalUs, maxArrivalUs = 0, 7258118400_000000

// plausibleFrame tells cheaply whether b may start a frame of a file with
// remaining bytes left: a known codec, a length that fits, and a first
// record whose length fits and whose arrival time is a date. Random bytes
// pass about once in ten million positions.
func plausibleFrame(b []byte, remaining int64) bool {
	if len(b) < frameHeaderLen {
		return false
	}
	n := int64(binary.LittleEndian.Uint32(b))
	codec := b[8]
	if codec > codecS2 || n < 4+bodyFixedLen || n > remaining-frameHeaderLen {
		return false
	}
	p := b[frameHeaderLen:]
	decoded := n
	if codec == codecS2 {
		// S2 starts with the decoded length and a literal: the first record's
		// leading bytes, uncompressed.
		l, k := binary.Uvarint(p)
		if k <= 0 || l <= uint64(n) || l > maxFrame {
			return false
		}
		decoded, p = int64(l), p[k:]
		if len(p) == 0 || p[0]&3 != 0 {
			return false
		}
		lit, skip := int(p[0]>>2)+1, 1
		if lit > 60 {
			skip += lit - 60
			lit = 0
			for j := skip - 1; j >= 1; j-- {
				if j >= len(p) {
					return true // cannot tell from the peek: check it whole
				}
				lit = lit<<8 | int(p[j])
			}
			lit++
		}
		if len(p) < skip {
			return true
		}
		p = p[skip:]
		if lit < 12 {
			return true
		}
	}
	if len(p) < 12 {
		return true
	}
	bl := int64(binary.LittleEndian.Uint32(p))
	arrival := int64(binary.LittleEndian.Uint64(p[4:]))
	return bl >= bodyFixedLen && bl+4 <= decoded && arrival >= minArrivalUs && arrival <= maxArrivalUs
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
func (l *eventLog) readRange(from, to Position, visit func(*Record) error) error {
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
	errs = append(errs, syncDir(l.dir))
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadLog calls visit for every record of the event log in dir without
// opening it for writing: for offline tools on the data directory of a
// stopped sidecar or an unpacked archive. Damaged frames are skipped as
// Open skips them, and reported in the returned Damage; a torn tail ends the
// read (the next start of the sidecar cuts it).
func ReadLog(dir string, visit func(*Record) error) (Damage, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return Damage{}, err
	}
	var d Damage
	for i, n := range segs {
		sc, err := scanSegment(segmentName(dir, n), 0, -1, nil, visit)
		if err != nil {
			return d, fmt.Errorf("segment %d: %w", n, err)
		}
		bad := sc.damaged
		if sc.tail != nil && i < len(segs)-1 {
			bad = append(bad, *sc.tail)
		}
		for _, sp := range bad {
			if d.Frames == 0 {
				d.First = fmt.Sprintf("segment %d, bytes %d-%d: %v", n, sp.Start, sp.End, sp.reason)
			}
			d.Frames++
			d.Bytes += sp.End - sp.Start
		}
	}
	return d, nil
}
