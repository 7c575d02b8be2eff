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
	"strconv"
	"strings"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// The points index keeps, beside the log, what the analysis reads of each
// stored event as one fixed-size record, in log order:
//
//	i64 timestamp µs | f64 latency | f64 cost (NaN when absent) |
//	i64 prompt | i64 completion | i64 total tokens |
//	u32 event | u32 model | u32 provider (ids into points.names; 0 = none) |
//	u8 flags | u24 checksum (CRC-32C of the 61 bytes before it, low 24 bits)
//
// points.names has one name per line, after the hex CRC-32C of the name and
// a space.
//
// Reading a million events' numbers from the log means decompressing and
// decoding ~550 MB of records; from the index it is one 64 MB read. The log
// stays the source of truth: when the index does not hold exactly the log's
// events (a crash between the two writes, or a data directory without it),
// Open rebuilds it from the log. Open also rebuilds it when a record or a
// name fails its checksum, or names an id the dictionary lacks; a read
// that meets such damage falls back to the log.

const (
	pointSize   = 64
	pointsFile  = "points.bin"
	namesFile   = "points.names"
	flagJudged  = 1 << 0
	flagSuccess = 1 << 1
	flagTokens  = 1 << 2
)

// Point is what the index holds of one stored event.
type Point struct {
	TimestampUs               int64
	LatencyMs, CostUSD        float64 // NaN when absent
	Judged, Success           bool
	HasTokens                 bool
	Prompt, Completion, Total int64
	Event, Model, Provider    string
}

type pointIndex struct {
	dir   string
	f     *os.File
	names *os.File
	ids   map[string]uint32
	list  []string // id-1 → name
	count int64    // records written
	buf   []byte
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
	if x.f, err = os.OpenFile(filepath.Join(dir, pointsFile), os.O_CREATE|os.O_RDWR, 0o644); err != nil {
		x.names.Close()
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
	return x, nil
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
	return crc32.Checksum(rec[:61], castagnoli) & 0xffffff
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
	for _, f := range []*os.File{x.f, x.names} {
		if err := f.Truncate(0); err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	x.ids, x.list, x.count, x.damaged = map[string]uint32{}, nil, 0, nil
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
	for _, e := range events {
		var rec [pointSize]byte
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
		sum := pointChecksum(rec[:])
		rec[61], rec[62], rec[63] = byte(sum), byte(sum>>8), byte(sum>>16)
		b = append(b, rec[:]...)
	}
	x.buf = b
	if len(newNames) > 0 {
		if _, err := x.names.Write(newNames); err != nil {
			return fmt.Errorf("write %s: %w", namesFile, err)
		}
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
	for off := int64(0); off < n; off += chunk {
		m := min(chunk, n-off)
		b := buf[:m*pointSize]
		if _, err := x.f.ReadAt(b, off*pointSize); err != nil {
			return err
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
			if err := visit(&p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (x *pointIndex) sync() error {
	return errors.Join(x.names.Sync(), x.f.Sync())
}

func (x *pointIndex) close() error {
	return errors.Join(x.sync(), x.names.Close(), x.f.Close())
}
