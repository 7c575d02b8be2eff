package tsdbstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"

	"github.com/klauspost/compress/s2"
)

// Reading the event log: frames are checked whole before any record is
// visited, and damage is told from a torn tail (see scanSegment).

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
func scanSegment(path string, start, end int64, known []span, visit func(*LogRecord) error) (segmentScan, error) {
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
	rec    LogRecord
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
func (fr *frameReader) read(f *os.File, off, end int64, visit func(*LogRecord) error) (int64, error) {
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

// ReadLog calls visit for every record of the event log in dir without
// opening it for writing: for offline tools on the data directory of a
// stopped sidecar or an unpacked archive. Damaged frames are skipped as
// Open skips them, and reported in the returned Damage; a torn tail ends the
// read (the next start of the sidecar cuts it).
func ReadLog(dir string, visit func(*LogRecord) error) (Damage, error) {
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
