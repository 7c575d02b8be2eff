package tsdbstore

import (
	"hash/maphash"
	"log/slog"
	"math/bits"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultDedupMaxIDs bounds the client event ids a store remembers when
// Options leave it zero: ~80 MB of heap at 19-23 bytes an id, the default
// 1h window (and the quarter more that expires with it) at ~900 events/s
// with ids, and within the shipped Kubernetes memory limit.
const DefaultDedupMaxIDs = 4_000_000

const (
	// A generation spans a quarter of the window, so an id is remembered
	// for the window and at most a quarter more.
	dedupGenerations = 4
	// Loads of a generation's table: the one it is sized for from the
	// previous generation's count, the one beyond which it grows, and the
	// one it is compacted to once a newer generation takes the new ids.
	// Above ~0.9 an ordered table's inserts shift long runs; below ~0.8
	// the bytes per id pass 20.
	dedupFillLoad   = 0.8
	dedupMaxLoad    = 0.9
	dedupSealedLoad = 0.9
	dedupGrowth     = 1.5
	// A generation is split by the top bits of the first hash into tables
	// that grow one at a time, so that growing one needs a 16th of the
	// generation's memory twice, not all of it.
	dedupSegmentBits = 4
	dedupMinHomes    = 16 // of a segment
)

// dedupSet remembers client-chosen event ids for the dedup window. An id is
// kept as two independent 64-bit hashes, so a false match needs a 128-bit
// collision. Ids are grouped into generations by arrival time and a whole
// generation expires at once, so expiry costs nothing per id. A generation
// is a few flat tables of 16-byte keys (a Go map of them costs ~3× as
// much), sized from the previous generation's count so that steady ingest
// never grows them. Not safe for concurrent use: the store's lock guards it.
type dedupSet struct {
	seed1, seed2    maphash.Seed
	windowUs, genUs int64
	maxIDs, genMax  int
	nowUs           int64       // newest time seen by advance
	gens            []*dedupGen // oldest first; add writes to the newest
	n               int         // ids in all generations
	hint            int         // ids of the last generation that was started over

	evictions prometheus.Counter
	ids       prometheus.Gauge
	logger    *slog.Logger
	warned    bool
}

type dedupGen struct {
	segs            [1 << dedupSegmentBits]dedupTable
	n               int
	startUs, lastUs int64 // first arrival, and the newest arrival of an id in it
}

func (g *dedupGen) seg(k dedupKey) *dedupTable { return &g.segs[k[0]>>(64-dedupSegmentBits)] }

// size gives every segment room for n ids of the generation at load.
func (g *dedupGen) size(n int, load float64) {
	per := n >> dedupSegmentBits
	for i := range g.segs {
		t := &g.segs[i]
		// A table already made is rebuilt only to save memory: when
		// its generation is sealed with fewer ids than it was sized for.
		if want := max(int(float64(max(per, t.n))/load)+1, dedupMinHomes); t.slots == nil || t.homes > want+want/32 {
			t.resize(want)
		}
	}
}

func (g *dedupGen) insert(k dedupKey) bool {
	t := g.seg(k)
	if t.n >= int(float64(t.homes)*dedupMaxLoad) {
		t.resize(int(float64(t.homes) * dedupGrowth))
	}
	if !t.insert(k) {
		return false
	}
	g.n++
	return true
}

func (g *dedupGen) remove(k dedupKey) bool {
	if !g.seg(k).remove(k) {
		return false
	}
	g.n--
	return true
}

func newDedupSet(windowUs int64, maxIDs int, logger *slog.Logger) *dedupSet {
	if maxIDs <= 0 {
		maxIDs = DefaultDedupMaxIDs
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &dedupSet{
		seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		windowUs: windowUs, genUs: max(windowUs/dedupGenerations, 1),
		// Capping each generation keeps the most recent ids when the
		// bound is reached: only a generation older than the newest is
		// ever evicted.
		maxIDs: maxIDs, genMax: max(maxIDs/dedupGenerations, 1),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crucible_ingest_dedup_evictions_total",
			Help: "Client event ids forgotten before the dedup window ended because --ingest.dedup-max-ids was reached; a retry of such an event is stored again.",
		}),
		ids: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "crucible_ingest_dedup_ids",
			Help: "Client event ids remembered for the dedup window.",
		}),
		logger: logger,
	}
}

func (d *dedupSet) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.evictions, d.ids}
}

func (d *dedupSet) key(id string) dedupKey {
	k := dedupKey{maphash.String(d.seed1, id), maphash.String(d.seed2, id)}
	if k == (dedupKey{}) {
		k[1] = 1 // the zero key marks an empty slot
	}
	return k
}

func (d *dedupSet) len() int { return d.n }

// advance expires the generations whose ids all arrived before the window
// as of nowUs.
func (d *dedupSet) advance(nowUs int64) {
	d.nowUs = max(d.nowUs, nowUs)
	from := d.nowUs - d.windowUs
	drop := 0
	for drop < len(d.gens) && d.gens[drop].lastUs < from {
		d.n -= d.gens[drop].n
		drop++
	}
	if drop > 0 {
		d.dropOldest(drop)
	}
}

func (d *dedupSet) dropOldest(k int) {
	clear(d.gens[:k])
	d.gens = append(d.gens[:0], d.gens[k:]...)
	d.ids.Set(float64(d.n))
}

func (d *dedupSet) contains(id string) bool {
	k := d.key(id)
	gens := d.gens
	// Load every generation's home slot before looking at any: the loads
	// are independent, so their cache misses overlap instead of adding up.
	var first [2 * dedupGenerations]dedupKey
	for i, g := range gens[:min(len(gens), len(first))] {
		t := g.seg(k)
		first[i] = t.slots[t.home(k)]
	}
	for i, g := range gens {
		if i < len(first) && (first[i] == (dedupKey{}) || k.less(first[i])) {
			continue // absent: its home slot is empty or holds a larger key
		}
		if _, ok := g.seg(k).find(k); ok {
			return true
		}
	}
	return false
}

// add records id as having arrived at arrivalUs. Callers check contains
// first; an id added twice is still one id to contains and remove.
func (d *dedupSet) add(id string, arrivalUs int64) {
	if arrivalUs < d.nowUs-d.windowUs {
		return // older than the window
	}
	g := d.newest()
	if g == nil || arrivalUs-g.startUs >= d.genUs || g.n >= d.genMax {
		g = d.startGen(arrivalUs)
	}
	if !g.insert(d.key(id)) {
		return
	}
	// A late arrival (its append raced one that started this generation)
	// is kept with the newer ids: longer, never shorter, than its window.
	g.lastUs = max(g.lastUs, arrivalUs)
	d.n++
	if d.n > d.maxIDs {
		d.evictOldest()
	}
	d.ids.Set(float64(d.n))
}

func (d *dedupSet) newest() *dedupGen {
	if len(d.gens) == 0 {
		return nil
	}
	return d.gens[len(d.gens)-1]
}

// startGen seals the newest generation, compacting its tables, and starts
// one sized for as many ids.
func (d *dedupSet) startGen(arrivalUs int64) *dedupGen {
	if g := d.newest(); g != nil {
		d.hint = g.n
		arrivalUs = max(arrivalUs, g.startUs)
		g.size(0, dedupSealedLoad)
	}
	g := &dedupGen{startUs: arrivalUs, lastUs: arrivalUs}
	g.size(min(d.hint, d.genMax), dedupFillLoad)
	d.gens = append(d.gens, g)
	return g
}

// evictOldest drops the oldest generation before its window ended.
func (d *dedupSet) evictOldest() {
	if len(d.gens) < 2 {
		return // the newest holds at most genMax ≤ maxIDs
	}
	n := d.gens[0].n
	d.n -= n
	d.dropOldest(1)
	d.evictions.Add(float64(n))
	if !d.warned {
		d.warned = true
		d.logger.Warn("dedup id bound reached: the oldest client event ids are forgotten before the dedup window ends, so a retry of one of them would be stored again",
			"max_ids", d.maxIDs, "window", time.Duration(d.windowUs)*time.Microsecond, "forgotten", n)
	}
}

// remove forgets id (an append that reserved it failed).
func (d *dedupSet) remove(id string) {
	k := d.key(id)
	for _, g := range d.gens {
		if g.remove(k) {
			d.n--
		}
	}
	d.ids.Set(float64(d.n))
}

// dedupKey is an id's two hashes; the zero key is an empty slot.
type dedupKey [2]uint64

func (a dedupKey) less(b dedupKey) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// dedupTable is an ordered linear-probing hash table (Amble and Knuth): a
// key's home slot grows with its first hash (past the segment's bits, which
// all its keys share), and the keys of a run are sorted, so the whole table
// is sorted. A lookup stops at the first larger key, which keeps misses
// (most lookups: new ids) as short as hits even at a load of 0.9, and a
// resize is one sequential pass.
type dedupTable struct {
	slots []dedupKey // homes, then room for the run of keys whose homes are near the end: the table never wraps around
	homes int
	n     int
}

func (t *dedupTable) home(k dedupKey) int {
	hi, _ := bits.Mul64(k[0]<<dedupSegmentBits, uint64(t.homes))
	return int(hi)
}

// room is the slots past the last home for the run of keys whose homes are
// near the end, as long as the runs at a load of 0.9 mostly are.
func room(homes int) int { return 16 + homes/64 }

// pageSlots rounds a large table up to whole pages, as the allocator does.
func pageSlots(n int) int {
	const page = 8192 / 16
	if n > 2*page {
		n = (n + page - 1) / page * page
	}
	return n
}

// find returns the slot of k, or where it would go.
func (t *dedupTable) find(k dedupKey) (int, bool) {
	i := t.home(k)
	for ; i < len(t.slots); i++ {
		s := t.slots[i]
		if s == k {
			return i, true
		}
		if s == (dedupKey{}) || k.less(s) {
			break
		}
	}
	return i, false
}

func (t *dedupTable) insert(k dedupKey) bool {
	p, ok := t.find(k)
	if ok {
		return false
	}
	e := p
	for e < len(t.slots) && t.slots[e] != (dedupKey{}) {
		e++
	}
	if e == len(t.slots) {
		t.slots = withRoom(t.slots)
	}
	copy(t.slots[p+1:e+1], t.slots[p:e])
	t.slots[p] = k
	t.n++
	return true
}

func (t *dedupTable) remove(k dedupKey) bool {
	p, ok := t.find(k)
	if !ok {
		return false
	}
	// Shift the rest of the run back over the hole while its keys stay at
	// or after their homes, so that no run has a gap.
	j := p + 1
	for ; j < len(t.slots) && t.slots[j] != (dedupKey{}) && t.home(t.slots[j]) < j; j++ {
		t.slots[j-1] = t.slots[j]
	}
	t.slots[j-1] = dedupKey{}
	t.n--
	return true
}

// resize rebuilds the table with homes home slots: the keys are in order,
// so each goes to its new home or just after the key before it.
func (t *dedupTable) resize(homes int) {
	old := t.slots
	homes = max(homes, t.n, 1)
	r := room(homes)
	t.slots = make([]dedupKey, pageSlots(homes+r))
	t.homes = len(t.slots) - r // the rest of the last page is homes too
	next := 0
	for _, k := range old {
		if k == (dedupKey{}) {
			continue
		}
		i := max(t.home(k), next)
		if i == len(t.slots) {
			t.slots = withRoom(t.slots)
		}
		t.slots[i] = k
		next = i + 1
	}
}

// withRoom adds slots at the end; append would add a quarter.
func withRoom(s []dedupKey) []dedupKey {
	r := make([]dedupKey, pageSlots(len(s)+room(len(s))))
	copy(r, s)
	return r
}
