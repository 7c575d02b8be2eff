package tsdbstore

import "hash/maphash"

// dedupSet remembers client-chosen event ids for the dedup window. Ids are
// kept as two independent 64-bit hashes, so a false match needs a 128-bit
// collision. The window is split into generations; a whole generation
// expires at once, so expiry costs nothing per id.
type dedupSet struct {
	seed1, seed2 maphash.Seed
	gens         []map[[2]uint64]struct{}
	genUs        int64 // span of one generation
	newestStart  int64 // arrival µs at which the newest generation began
}

const dedupGenerations = 4

func newDedupSet(windowUs int64) *dedupSet {
	d := &dedupSet{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), genUs: max(windowUs/dedupGenerations, 1)}
	// One extra generation so an id is kept at least the full window.
	d.gens = make([]map[[2]uint64]struct{}, dedupGenerations+1)
	for i := range d.gens {
		d.gens[i] = make(map[[2]uint64]struct{})
	}
	return d
}

func (d *dedupSet) key(id string) [2]uint64 {
	return [2]uint64{maphash.String(d.seed1, id), maphash.String(d.seed2, id)}
}

// advance expires generations older than the window as of nowUs.
func (d *dedupSet) advance(nowUs int64) {
	if d.newestStart == 0 {
		d.newestStart = nowUs
		return
	}
	for nowUs-d.newestStart >= d.genUs {
		copy(d.gens[1:], d.gens[:len(d.gens)-1])
		d.gens[0] = make(map[[2]uint64]struct{})
		d.newestStart += d.genUs
		if nowUs-d.newestStart > int64(len(d.gens))*d.genUs {
			d.newestStart = nowUs // long idle: everything has expired
			for i := range d.gens {
				d.gens[i] = make(map[[2]uint64]struct{})
			}
		}
	}
}

func (d *dedupSet) contains(id string) bool {
	k := d.key(id)
	for _, g := range d.gens {
		if _, ok := g[k]; ok {
			return true
		}
	}
	return false
}

// add records id as having arrived at arrivalUs.
func (d *dedupSet) add(id string, arrivalUs int64) {
	age := d.newestStart - arrivalUs
	gen := 0
	if age > 0 {
		gen = int(age/d.genUs) + 1
	}
	if gen >= len(d.gens) {
		return // older than the window
	}
	d.gens[gen][d.key(id)] = struct{}{}
}

// remove forgets id (an append that reserved it failed).
func (d *dedupSet) remove(id string) {
	k := d.key(id)
	for _, g := range d.gens {
		delete(g, k)
	}
}
