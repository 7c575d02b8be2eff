// Package evalstore keeps the scores that arrive apart from their events:
// OpenTelemetry gen_ai.evaluation.result log records, each a score of the
// span it names (SPEC §13, §15). An evaluation may arrive before its span
// or long after it, and the span's event is stored once and never
// rewritten, so the two are joined when the events are read: the analysis,
// comparison, pairing and export of an experiment look each event that has
// a span key up here.
//
// The store is one append-only file of checksummed records, sidecar-wide
// (the evaluation names a span, not an experiment), fsynced before an
// evaluation is acknowledged and read whole into memory on open. A torn
// last record is cut; a damaged record with good ones after it is skipped
// and counted, never the good ones with it.
package evalstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// File is the store's file, in the data directory.
const File = "evaluations.log"

// A record is
//
//	u32 payload length | u32 CRC-32C of the payload | payload
//	payload: u8 version | 24-byte span key | i64 time µs | u8 name length | name | f64 value
const (
	headerLen     = 8
	recordVersion = 1
	fixedPayload  = 1 + len(event.SpanKey{}) + 8 + 1 + 8
	maxPayload    = fixedPayload + maxNameLen
	maxNameLen    = 64 // event.ValidScoreName's bound
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Evaluation is one score of a span.
type Evaluation struct {
	Span        event.SpanKey
	Name        string
	Value       float64
	TimestampUs int64
}

// Damage is what Open found damaged: records skipped, and their bytes.
type Damage struct {
	Records int   `json:"records"`
	Bytes   int64 `json:"bytes"`
}

// Store is the evaluations of a data directory. Its methods are safe for
// concurrent use; a reader never waits for an fsync.
type Store struct {
	// wmu serialises writers (Add, Close) and guards f: only they change
	// scores, so under wmu scores can be read without mu.
	wmu sync.Mutex
	f   *os.File // nil when read-only or closed
	// mu guards scores and names for readers against apply.
	mu     sync.RWMutex
	scores map[event.SpanKey][]event.Score
	names  map[string]string // interned score names
	count  atomic.Int64      // scores held: spans × names
	max    int64             // the bound on count; 0: none
	damage Damage
}

// Options bound a Store.
type Options struct {
	// MaxScores bounds the scores held (spans × names), so memory is
	// bounded whatever clients send: past it an evaluation of a new span
	// or a new name is refused; one that replaces a held score is not.
	// 0: no bound.
	MaxScores int64
	Logger    *slog.Logger
}

// Open opens (creating) the store in dir for reading and appending. A file
// holding many more records than scores (re-evaluations replace scores,
// the file only grows) is compacted first.
func Open(dir string, o Options) (*Store, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, File)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// The new file's name must outlive a power loss as its records do.
		if err := tsdbstore.SyncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	s := newStore()
	s.max = o.MaxScores
	end, records, err := s.load(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if end < fi.Size() {
		// A torn last record: the write that held it was never acknowledged.
		logger.Warn("Cut the torn end of the evaluations file", "file", f.Name(), "bytes", fi.Size()-end)
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, err
		}
	}
	if s.damage.Records > 0 {
		logger.Error("Skipped damaged records of the evaluations file; the records around them are kept",
			"file", f.Name(), "records", s.damage.Records, "bytes", s.damage.Bytes)
	}
	if n := s.count.Load(); int64(records) > 2*n+compactSlack {
		f.Close()
		if f, err = s.compact(dir); err != nil {
			return nil, fmt.Errorf("compact %s: %w", File, err)
		}
		logger.Info("Compacted the evaluations file", "records", records, "scores", n)
	} else if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// compactSlack is how many replaced records a file may hold beyond twice
// its scores before Open compacts it.
const compactSlack = 4096

// compact writes the scores held to a new file and puts it in place of the
// old one (written, fsynced and renamed, so a crash leaves one or the
// other), and returns it open for appending.
func (s *Store) compact(dir string) (*os.File, error) {
	tmp := filepath.Join(dir, File+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	var buf []byte
	for k, scores := range s.scores {
		for _, sc := range scores {
			buf = encode(buf, Evaluation{Span: k, Name: sc.Name, Value: sc.Value})
		}
		if len(buf) > 1<<20 {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return nil, err
			}
			buf = buf[:0]
		}
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, File))
	}
	if err == nil {
		err = tsdbstore.SyncDir(dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

// OpenReadOnly reads the store in dir without changing it; a directory
// without one has no evaluations.
func OpenReadOnly(dir string) (*Store, error) {
	s := newStore()
	f, err := os.Open(filepath.Join(dir, File))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, _, err := s.load(f); err != nil {
		return nil, err
	}
	return s, nil
}

func newStore() *Store {
	return &Store{scores: map[event.SpanKey][]event.Score{}, names: map[string]string{}}
}

// load reads every record of f and returns where the last good one ends
// and how many good records it read.
func (s *Store) load(f *os.File) (int64, int, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, 0, err
	}
	var end int64
	records := 0
	for off := 0; off < len(data); {
		ev, n, ok := decode(data[off:])
		if ok {
			s.apply(ev)
			records++
			off += n
			end = int64(off)
			continue
		}
		// Damage, or the torn end: the next good record decides which.
		next := resync(data, off+1)
		if next < 0 {
			break
		}
		s.damage.Records++
		s.damage.Bytes += int64(next - off)
		off = next
	}
	return end, records, nil
}

// resync finds the first good record at or after from; -1 when none.
func resync(data []byte, from int) int {
	for i := from; i+headerLen <= len(data); i++ {
		if _, _, ok := decode(data[i:]); ok {
			return i
		}
	}
	return -1
}

// decode reads the record at the front of b: only the form encode writes.
func decode(b []byte) (Evaluation, int, bool) {
	var ev Evaluation
	if len(b) < headerLen {
		return ev, 0, false
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < fixedPayload || n > maxPayload || len(b) < headerLen+n {
		return ev, 0, false
	}
	p := b[headerLen : headerLen+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(b[4:]) || p[0] != recordVersion {
		return ev, 0, false
	}
	copy(ev.Span[:], p[1:25])
	ev.TimestampUs = int64(binary.LittleEndian.Uint64(p[25:]))
	nameLen := int(p[33])
	if n != fixedPayload+nameLen {
		return ev, 0, false
	}
	ev.Name = string(p[34 : 34+nameLen])
	ev.Value = math.Float64frombits(binary.LittleEndian.Uint64(p[34+nameLen:]))
	if !event.ValidScoreName(ev.Name) || math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0) {
		return ev, 0, false
	}
	return ev, headerLen + n, true
}

func encode(b []byte, ev Evaluation) []byte {
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(fixedPayload+len(ev.Name)))
	b = append(b, 0, 0, 0, 0) // the checksum, below
	b = append(b, recordVersion)
	b = append(b, ev.Span[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(ev.TimestampUs))
	b = append(b, byte(len(ev.Name)))
	b = append(b, ev.Name...)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(ev.Value))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+headerLen:], castagnoli))
	return b
}

// check says why ev cannot be stored, or nil.
func check(ev Evaluation) error {
	if !event.ValidScoreName(ev.Name) {
		return fmt.Errorf("%w: score name %q: want [A-Za-z_][A-Za-z0-9_.:-]{0,63}", event.ErrInvalid, ev.Name)
	}
	if math.IsNaN(ev.Value) || math.IsInf(ev.Value, 0) {
		return fmt.Errorf("%w: score %s must be a finite number", event.ErrInvalid, ev.Name)
	}
	if ev.Span == (event.SpanKey{}) {
		return fmt.Errorf("%w: an evaluation needs the trace and span ids of the span it scores", event.ErrInvalid)
	}
	return nil
}

// apply adds ev to the scores in memory: a later score of a name replaces
// an earlier one (a re-evaluation, or a retried export). Slices are
// replaced, never changed, so a reader may keep one.
func (s *Store) apply(ev Evaluation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.names[ev.Name]
	if !ok {
		name = strings.Clone(ev.Name)
		s.names[name] = name
	}
	old := s.scores[ev.Span]
	i, found := slices.BinarySearchFunc(old, name, func(sc event.Score, n string) int { return strings.Compare(sc.Name, n) })
	next := make([]event.Score, len(old), len(old)+1)
	copy(next, old)
	if found {
		next[i].Value = ev.Value
	} else {
		next = slices.Insert(next, i, event.Score{Name: name, Value: ev.Value})
		s.count.Add(1)
	}
	s.scores[ev.Span] = next
}

// Rejection is an evaluation Add did not store, by its index in the batch.
type Rejection struct {
	Index int
	Err   error
}

// Add stores evs durably (written and fsynced) before it returns, and
// returns the ones it refused: invalid, a new score name for a span that
// has event.MaxScores already, or a new score past Options.MaxScores.
// Nothing of a batch is held in memory unless all of its accepted
// evaluations are on disk.
func (s *Store) Add(evs []Evaluation) ([]Rejection, error) {
	var rejected []Rejection
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.f == nil {
		return nil, errors.New("evaluations store is read-only or closed")
	}
	// Names per span as they will be after the batch, for the bounds.
	added := map[event.SpanKey][]string{}
	newScores := int64(0)
	var buf []byte
	keep := make([]Evaluation, 0, len(evs))
	for i, ev := range evs {
		if err := check(ev); err != nil {
			rejected = append(rejected, Rejection{Index: i, Err: err})
			continue
		}
		if !s.has(ev.Span, ev.Name) && !slices.Contains(added[ev.Span], ev.Name) {
			if len(s.scores[ev.Span])+len(added[ev.Span]) >= event.MaxScores {
				rejected = append(rejected, Rejection{Index: i, Err: fmt.Errorf("%w: span %s has %d scores already, the most an event holds",
					event.ErrInvalid, ev.Span.EventID(), event.MaxScores)})
				continue
			}
			if s.max > 0 && s.count.Load()+newScores >= s.max {
				rejected = append(rejected, Rejection{Index: i, Err: fmt.Errorf("%w: the evaluations store holds %d scores, its bound (--otlp.max-evaluation-scores)",
					ErrFull, s.max)})
				continue
			}
			added[ev.Span] = append(added[ev.Span], ev.Name)
			newScores++
		}
		buf = encode(buf, ev)
		keep = append(keep, ev)
	}
	if len(buf) == 0 {
		return rejected, nil
	}
	pos, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	if _, err := s.f.Write(buf); err != nil {
		// Undo a partial write, so the file ends in a whole record.
		return nil, errors.Join(fmt.Errorf("write evaluations: %w", err), s.truncate(pos))
	}
	if err := s.f.Sync(); err != nil {
		return nil, errors.Join(fmt.Errorf("sync evaluations: %w", err), s.truncate(pos))
	}
	for _, ev := range keep {
		s.apply(ev)
	}
	return rejected, nil
}

// ErrFull marks an evaluation refused because the store holds as many
// scores as Options.MaxScores allows.
var ErrFull = errors.New("evaluations store full")

func (s *Store) truncate(pos int64) error {
	if err := s.f.Truncate(pos); err != nil {
		return err
	}
	_, err := s.f.Seek(pos, io.SeekStart)
	return err
}

func (s *Store) has(k event.SpanKey, name string) bool {
	_, found := slices.BinarySearchFunc(s.scores[k], name, func(sc event.Score, n string) int { return strings.Compare(sc.Name, n) })
	return found
}

// Scores returns the scores of the span k, sorted by name; nil when none.
// The slice is the store's: read it, never change it.
func (s *Store) Scores(k event.SpanKey) []event.Score {
	if s.count.Load() == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.scores[k]
}

// Empty tells whether the store holds no evaluation, so a reader can skip
// looking events up.
func (s *Store) Empty() bool { return s.count.Load() == 0 }

// Count is the number of scores held: spans × names.
func (s *Store) Count() int64 { return s.count.Load() }

// Damage reports the damaged records Open skipped.
func (s *Store) Damage() Damage { return s.damage }

// Close closes the file.
func (s *Store) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Merge returns own with overlay's scores added, overlay winning a name
// both hold; both sorted by name, as the result is. own is returned as it
// is when overlay is empty, else a new slice: the caller may change it
// without touching either.
func Merge(own, overlay []event.Score) []event.Score {
	if len(overlay) == 0 {
		return own
	}
	out := make([]event.Score, 0, len(own)+len(overlay))
	i, j := 0, 0
	for i < len(own) && j < len(overlay) {
		switch c := strings.Compare(own[i].Name, overlay[j].Name); {
		case c < 0:
			out = append(out, own[i])
			i++
		case c > 0:
			out = append(out, overlay[j])
			j++
		default:
			out = append(out, overlay[j])
			i, j = i+1, j+1
		}
	}
	out = append(out, own[i:]...)
	return append(out, overlay[j:]...)
}

// AppendScores appends the records of a span's scores to b, in the form of
// the store's file: what an archive of an experiment carries of its
// events' evaluations, so that the unpacked archive is a data directory
// whose Open finds them.
func AppendScores(b []byte, k event.SpanKey, scores []event.Score) []byte {
	for _, sc := range scores {
		b = encode(b, Evaluation{Span: k, Name: sc.Name, Value: sc.Value})
	}
	return b
}
