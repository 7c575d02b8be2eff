package experiment

import (
	"bufio"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// RunSize is how many events an ordered read sorts in memory at a time;
// larger experiments are sorted in runs on disk and merged.
const RunSize = 20_000

// Ordered reads stored events in (timestamp, event_id) order with memory
// bounded by RunSize, whatever the experiment's size: an external merge sort.
type Ordered struct {
	scan    func(func(*tsdbstore.Record) error) error
	spec    Spec
	tmpDir  string
	runSize int
}

// Ordered returns an ordered reader of a running sidecar's experiment.
func (m *Manager) Ordered(id string) (*Ordered, Record, error) {
	x, err := m.lookup(id)
	if err != nil {
		return nil, Record{}, err
	}
	rec := x.record(m.opts.Now())
	return &Ordered{scan: x.store.Scan, spec: rec.Spec, tmpDir: m.opts.Dir, runSize: RunSize}, rec, nil
}

// OpenOrdered returns an ordered reader of an experiment in a data
// directory, without a sidecar.
func OpenOrdered(storagePath, id string) (*Ordered, Record, error) {
	rec, err := readRecord(storagePath, id)
	if err != nil {
		return nil, Record{}, err
	}
	dir := experimentDir(storagePath, id)
	scan := func(visit func(*tsdbstore.Record) error) error {
		return tsdbstore.ReadLog(dir+"/events", visit)
	}
	return &Ordered{scan: scan, spec: rec.Spec, tmpDir: storagePath, runSize: RunSize}, rec, nil
}

type sortItem struct {
	ts   int64
	id   string
	data []byte
}

func compareItems(a, b sortItem) int { return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id)) }

// Read calls first for every matching event in log order (for example to
// collect CSV columns), then visit for each in (timestamp, event_id) order.
// Events passed to either are valid only during the call. With objects
// false their Metadata and Measurements are not decoded (Raw holds them).
func (o *Ordered) Read(f Filter, objects bool, first, visit func(*event.Event) error) error {
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
	flush := func() error {
		slices.SortFunc(items, compareItems)
		name, err := writeRun(o.tmpDir, items)
		if err != nil {
			return err
		}
		runs = append(runs, name)
		items = items[:0]
		return nil
	}
	err := o.scan(func(r *tsdbstore.Record) error {
		dec.Reset()
		if err := dec.DecodeRecord(r.Data, &e, objects && first != nil); err != nil {
			return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
		}
		o.fill(&e)
		if !f.Match(&e) {
			return nil
		}
		if first != nil {
			if err := first(&e); err != nil {
				return err
			}
		}
		items = append(items, sortItem{e.Timestamp, e.EventID, append([]byte(nil), r.Data...)})
		if len(items) == o.runSize {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	emit := func(data []byte) error {
		dec.Reset()
		if err := dec.DecodeRecord(data, &e, objects); err != nil {
			return err
		}
		o.fill(&e)
		return visit(&e)
	}
	if len(runs) == 0 {
		slices.SortFunc(items, compareItems)
		for _, it := range items {
			if err := emit(it.data); err != nil {
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
	return mergeRuns(runs, emit)
}

func (o *Ordered) fill(e *event.Event) {
	e.ExperimentID, e.ExperimentName, e.Condition, e.Tags = o.spec.ID, o.spec.Name, o.spec.Condition, o.spec.Tags
}

// writeRun writes sorted items: u32 data length | i64 timestamp |
// u8 id length | id | stored event, so merging needs no decoding.
func writeRun(dir string, items []sortItem) (string, error) {
	f, err := os.CreateTemp(dir, "sort-run-*")
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [13]byte
	for _, it := range items {
		binary.LittleEndian.PutUint32(hdr[0:], uint32(len(it.data)))
		binary.LittleEndian.PutUint64(hdr[4:], uint64(it.ts))
		hdr[12] = byte(len(it.id))
		w.Write(hdr[:])
		w.WriteString(it.id)
		w.Write(it.data)
	}
	err = errors.Join(w.Flush(), f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

type runReader struct {
	r    *bufio.Reader
	f    *os.File
	head sortItem
}

func (rr *runReader) next() (bool, error) {
	var hdr [13]byte
	if _, err := io.ReadFull(rr.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	buf := make([]byte, int(hdr[12])+int(binary.LittleEndian.Uint32(hdr[0:])))
	if _, err := io.ReadFull(rr.r, buf); err != nil {
		return false, err
	}
	idLen := int(hdr[12])
	rr.head = sortItem{int64(binary.LittleEndian.Uint64(hdr[4:])), string(buf[:idLen]), buf[idLen:]}
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
func mergeRuns(names []string, emit func([]byte) error) error {
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
		rr := &runReader{r: bufio.NewReaderSize(f, 64<<10), f: f}
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
		if err := emit(rr.head.data); err != nil {
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
