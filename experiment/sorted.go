package experiment

import (
	"bufio"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"

	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// RunSize is how many events an ordered read sorts in memory at a time;
// larger experiments are sorted in runs on disk and merged.
const RunSize = 10_000

// orderedReader reads stored events in (timestamp, event_id) order with
// memory bounded by RunSize, whatever the experiment's size: an external
// merge sort.
type orderedReader struct {
	scan    func(context.Context, func(*tsdbstore.LogRecord) error) error
	spec    Spec
	evals   *evalstore.Store // joined to the events read; may be nil
	tmpDir  string
	runSize int
}

// ordered returns an ordered reader of an open experiment.
func (m *Manager) ordered(id string) (*orderedReader, error) {
	// Opened now, so that storage that cannot open fails before an
	// answer starts; the scan reads through readStore all the same.
	_, spec, err := m.lookupRead(id)
	if err != nil {
		return nil, err
	}
	scan := func(ctx context.Context, visit func(*tsdbstore.LogRecord) error) error {
		return m.readStore(id, func(s *tsdbstore.Store, _ Spec) error { return s.Scan(ctx, visit) })
	}
	return &orderedReader{scan: scan, spec: spec, evals: m.evals.Load(), tmpDir: m.opts.Dir, runSize: RunSize}, nil
}

type sortItem struct {
	ts    int64
	id    string
	data  []byte // the stored event
	extra []byte // what readSpec.Annotate returned
}

func compareItems(a, b sortItem) int { return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id)) }

// readSpec says what Read does with the events.
type readSpec struct {
	Filter Filter
	// Annotate, when set, sees every matching event in log order, with its
	// Metadata and Measurements decoded if AnnotateObjects (else Raw holds
	// them). What it returns travels with the event through the sort.
	Annotate        func(*event.Event) ([]byte, error)
	AnnotateObjects bool
	// Visit sees each matching event in (timestamp, event_id) order with
	// what Annotate returned for it.
	Visit        func(*event.Event, []byte) error
	VisitObjects bool
}

// Read hands the matching events to rs.Visit in (timestamp, event_id)
// order. Events passed to Annotate or Visit are valid only during the call.
// The store is read until ctx is done.
func (o *orderedReader) Read(ctx context.Context, rs readSpec) error {
	f := rs.Filter
	if f.Condition != "" && f.Condition != o.spec.Condition {
		return nil
	}
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var e event.Event
	var runs []string
	defer func() {
		for _, r := range runs {
			os.Remove(r)
		}
	}()
	items := make([]sortItem, 0, 1024)
	var mem slab
	runWriter := bufio.NewWriterSize(nil, 1<<20)
	flush := func() error {
		slices.SortFunc(items, compareItems)
		name, err := writeRun(o.tmpDir, items, runWriter)
		if err != nil {
			return err
		}
		runs = append(runs, name)
		items = items[:0]
		mem.reset()
		return nil
	}
	var extra []byte
	scan := func(visit func(*tsdbstore.LogRecord) error) error { return o.scan(ctx, visit) }
	err := prefetch(scan, func(data []byte, pos tsdbstore.Position) error {
		dec.Reset()
		// Nothing of the view outlives this call but what is copied below.
		if err := dec.DecodeRecordView(data, &e, rs.AnnotateObjects && rs.Annotate != nil); err != nil {
			return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, pos, err)
		}
		o.spec.Stamp(&e)
		if !f.Match(&e) {
			return nil
		}
		extra = extra[:0]
		if rs.Annotate != nil {
			joinEvent(o.evals, &e) // what Annotate makes of it travels to Visit
			var err error
			if extra, err = rs.Annotate(&e); err != nil {
				return err
			}
		}
		buf := mem.alloc(len(e.EventID) + len(data) + len(extra))
		n := copy(buf, e.EventID)
		copy(buf[n:], data)
		copy(buf[n+len(data):], extra)
		id := unsafe.String(unsafe.SliceData(buf), n) // lives in the slab until the run is written
		items = append(items, sortItem{e.Timestamp, id, buf[n : n+len(data)], buf[n+len(data):]})
		if len(items) == o.runSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	emit := func(it *sortItem) error {
		dec.Reset()
		if err := dec.DecodeRecord(it.data, &e, rs.VisitObjects); err != nil {
			return err
		}
		o.spec.Stamp(&e)
		joinEvent(o.evals, &e)
		return rs.Visit(&e, it.extra)
	}
	if len(runs) == 0 {
		slices.SortFunc(items, compareItems)
		for i := range items {
			if err := emit(&items[i]); err != nil {
				return err
			}
		}
		return nil
	}
	if len(items) > 0 {
		if err := flush(); err != nil {
			return err
		}
	}
	if runs, err = reduceRuns(o.tmpDir, runs, runWriter); err != nil {
		runs = nil // reduceRuns removed them
		return err
	}
	return mergeRuns(runs, emit)
}

// prefetch runs scan on a goroutine of its own and hands visit each
// record's data and position, in order: reading and decompressing the log
// overlaps with decoding its events. data is valid only during the call.
func prefetch(scan func(func(*tsdbstore.LogRecord) error) error, visit func(data []byte, pos tsdbstore.Position) error) error {
	type batch struct {
		buf  []byte
		ends []int
		pos  []tsdbstore.Position
	}
	const batches, batchBytes = 3, 256 << 10
	free := make(chan *batch, batches)
	full := make(chan *batch, batches)
	for range batches {
		free <- &batch{buf: make([]byte, 0, batchBytes)}
	}
	stop := make(chan struct{})
	errStopped := errors.New("stopped")
	scanErr := make(chan error, 1)
	go func() {
		defer close(full)
		b := <-free
		err := scan(func(r *tsdbstore.LogRecord) error {
			b.buf = append(b.buf, r.Data...)
			b.ends = append(b.ends, len(b.buf))
			b.pos = append(b.pos, r.Pos)
			if len(b.buf) < batchBytes {
				return nil
			}
			full <- b
			select {
			case b = <-free:
				return nil
			case <-stop:
				return errStopped
			}
		})
		if err == nil && len(b.ends) > 0 {
			full <- b
		}
		scanErr <- err
	}()
	var err error
	for b := range full {
		start := 0
		for i, end := range b.ends {
			if err != nil {
				break
			}
			if err = visit(b.buf[start:end], b.pos[i]); err != nil {
				close(stop) // the scan ends; drain what it sent
			}
			start = end
		}
		b.buf, b.ends, b.pos = b.buf[:0], b.ends[:0], b.pos[:0]
		free <- b
	}
	if serr := <-scanErr; err == nil && !errors.Is(serr, errStopped) {
		err = serr
	}
	return err
}

// slab hands out the bytes of one run's events from a few large blocks,
// reused from run to run: copying each event into its own allocation made
// the garbage collector the largest cost of a large export.
type slab struct {
	blocks [][]byte
	cur    int
}

const slabBlock = 1 << 20

func (s *slab) alloc(n int) []byte {
	for ; s.cur < len(s.blocks); s.cur++ {
		b := s.blocks[s.cur]
		if cap(b)-len(b) >= n {
			s.blocks[s.cur] = b[:len(b)+n]
			return b[len(b) : len(b)+n : len(b)+n]
		}
	}
	s.blocks = append(s.blocks, make([]byte, n, max(n, slabBlock)))
	return s.blocks[s.cur][:n:n]
}

// reset makes every block free again; what alloc returned is then invalid.
func (s *slab) reset() {
	for i := range s.blocks {
		s.blocks[i] = s.blocks[i][:0]
	}
	s.cur = 0
}

// writeRun writes sorted items: u32 data length | u32 extra length |
// i64 timestamp | u8 id length | id | stored event | extra, so merging
// needs no decoding.
func writeRun(dir string, items []sortItem, w *bufio.Writer) (string, error) {
	return createRun(dir, w, func(put func(*sortItem)) error {
		for i := range items {
			put(&items[i])
		}
		return nil
	})
}

// createRun writes the items fill puts, in the order it puts them, to a
// new run file.
func createRun(dir string, w *bufio.Writer, fill func(put func(*sortItem)) error) (string, error) {
	f, err := os.CreateTemp(dir, "sort-run-*")
	if err != nil {
		return "", err
	}
	w.Reset(f)
	var hdr [runHeader]byte
	err = fill(func(it *sortItem) {
		binary.LittleEndian.PutUint32(hdr[0:], uint32(len(it.data)))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(it.extra)))
		binary.LittleEndian.PutUint64(hdr[8:], uint64(it.ts))
		hdr[16] = byte(len(it.id))
		w.Write(hdr[:])
		w.WriteString(it.id)
		w.Write(it.data)
		w.Write(it.extra)
	})
	err = errors.Join(err, w.Flush(), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// mergeFanIn is the most runs one merge reads at once: more would mean as
// many open files and read buffers.
const mergeFanIn = 128

// reduceRuns merges groups of runs into longer runs until at most
// mergeFanIn remain. It removes the runs it merged.
func reduceRuns(dir string, runs []string, w *bufio.Writer) ([]string, error) {
	for len(runs) > mergeFanIn {
		var next []string
		for i := 0; i < len(runs); i += mergeFanIn {
			group := runs[i:min(i+mergeFanIn, len(runs))]
			name, err := createRun(dir, w, func(put func(*sortItem)) error {
				return mergeRuns(group, func(it *sortItem) error { put(it); return nil })
			})
			for _, r := range group {
				os.Remove(r)
			}
			if err != nil {
				for _, r := range append(next, runs[i+len(group):]...) {
					os.Remove(r)
				}
				return nil, err
			}
			next = append(next, name)
		}
		runs = next
	}
	return runs, nil
}

type runReader struct {
	r    *bufio.Reader
	f    *os.File
	head sortItem // valid until the next call of next
	buf  []byte
}

const runHeader = 17

func (rr *runReader) next() (bool, error) {
	var hdr [runHeader]byte
	if _, err := io.ReadFull(rr.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	idLen, dataLen := int(hdr[16]), int(binary.LittleEndian.Uint32(hdr[0:]))
	n := idLen + dataLen + int(binary.LittleEndian.Uint32(hdr[4:]))
	if cap(rr.buf) < n {
		rr.buf = make([]byte, 2*n)
	}
	buf := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, buf); err != nil {
		return false, err
	}
	rr.head = sortItem{int64(binary.LittleEndian.Uint64(hdr[8:])), string(buf[:idLen]), buf[idLen : idLen+dataLen], buf[idLen+dataLen:]}
	return true, nil
}

type runHeap []*runReader

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return compareItems(h[i].head, h[j].head) < 0 }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*runReader)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeRuns emits the runs' events in order: a k-way merge.
func mergeRuns(names []string, emit func(*sortItem) error) error {
	// Read buffers take at most 8 MiB together.
	readBuffer := min(64<<10, max(16<<10, 8<<20/max(1, len(names))))
	h := runHeap{}
	defer func() {
		for _, rr := range h {
			rr.f.Close()
		}
	}()
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		rr := &runReader{r: bufio.NewReaderSize(f, readBuffer), f: f}
		ok, err := rr.next()
		if err != nil {
			f.Close()
			return err
		}
		if ok {
			h = append(h, rr)
		} else {
			f.Close()
		}
	}
	heap.Init(&h)
	for len(h) > 0 {
		rr := h[0]
		if err := emit(&rr.head); err != nil {
			return err
		}
		ok, err := rr.next()
		if err != nil {
			return err
		}
		if ok {
			heap.Fix(&h, 0)
		} else {
			rr.f.Close()
			heap.Pop(&h)
		}
	}
	return nil
}
