package analysis

import (
	"math"
	"math/bits"
	"slices"
	"strings"
)

// The metrics of a sample, in the order bySample keeps them: latency,
// cost and success, then the arm's score columns.
const (
	metricLatency = iota
	metricCost
	metricSuccess
	metricScores
)

// bySample is one arm's events grouped by sample id, the samples numbered
// in the order they first appear in the arm. Each arm numbers its own, so
// arms are collected independently; pairArms joins them by id, once per
// sample rather than once per event.
//
// A sample's figures lie together, so adding an event touches one or two
// cache lines however many metrics there are: m metrics, per sample m
// Neumaier sums (sum, compensation) in sums, and its event count and the m
// value counts in counts.
type bySample struct {
	index  map[string]int32
	ids    []string
	m      int
	sums   []float64
	counts []int32
	means  []float64 // per sample m means, NaN where none; set by finish
}

// sample is the number of a sample id, new ones numbered next.
func (g *bySample) sample(id string) int32 {
	if j, ok := g.index[id]; ok {
		return j
	}
	if g.index == nil {
		g.index = map[string]int32{}
	}
	j := int32(len(g.ids))
	// The id in memory of its own, beside the ids before it, rather than
	// in the event's: the map's comparisons then read compact memory.
	id = strings.Clone(id)
	g.index[id] = j
	g.ids = append(room(g.ids, 1), id)
	g.sums = append(room(g.sums, 2*g.m), make([]float64, 2*g.m)...)
	g.counts = append(room(g.counts, g.m+1), make([]int32, g.m+1)...)
	return j
}

// room makes room for k more elements by doubling s: append grows large
// slices by a quarter, which would copy the sums over and over as samples
// keep coming.
func room[T any](s []T, k int) []T {
	if cap(s)-len(s) >= k {
		return s
	}
	return slices.Grow(s, max(len(s), k, 256))
}

// add counts point p in sample j; cols are the score columns of p's scores.
func (g *bySample) add(j int32, p *Point, cols []int) {
	sums := g.sums[int(j)*2*g.m : (int(j)+1)*2*g.m]
	counts := g.counts[int(j)*(g.m+1) : (int(j)+1)*(g.m+1)]
	counts[0]++
	if !math.IsNaN(p.LatencyMs) {
		neumaier(sums[2*metricLatency:], p.LatencyMs)
		counts[1+metricLatency]++
	}
	if !math.IsNaN(p.CostUSD) {
		neumaier(sums[2*metricCost:], p.CostUSD)
		counts[1+metricCost]++
	}
	if p.Success >= 0 {
		neumaier(sums[2*metricSuccess:], float64(p.Success))
		counts[1+metricSuccess]++
	}
	for i, sc := range p.Scores {
		if k := metricScores + cols[i]; !math.IsNaN(sc.Value) {
			neumaier(sums[2*k:], sc.Value)
			counts[1+k]++
		}
	}
}

// neumaier adds x to the compensated sum acc[0] + acc[1].
func neumaier(acc []float64, x float64) {
	s := acc[0]
	t := s + x
	if math.Abs(s) >= math.Abs(x) {
		acc[1] += (s - t) + x
	} else {
		acc[1] += (x - t) + s
	}
	acc[0] = t
}

// mean is metric k's mean in sample j, NaN when it has no value there.
func (g *bySample) mean(j, k int) float64 { return g.means[j*g.m+k] }

// finish turns the sums into means. A sum beyond float64 (values near
// MaxFloat64) is redone on values scaled down by a power of two, reading
// the arm's points again: a rare path, so the common one keeps one pass.
func (g *bySample) finish(points []Point, scores *scoreValues) {
	n := len(g.ids)
	g.means = make([]float64, n*g.m)
	var over []bool // by metric: some sample's sum overflowed
	for j := range n {
		for k := range g.m {
			c := g.counts[j*(g.m+1)+1+k]
			if c == 0 {
				g.means[j*g.m+k] = math.NaN()
				continue
			}
			v := (g.sums[2*(j*g.m+k)] + g.sums[2*(j*g.m+k)+1]) / float64(c)
			if math.IsInf(v, 0) || math.IsNaN(v) {
				if over == nil {
					over = make([]bool, g.m)
				}
				over[k] = true
			}
			g.means[j*g.m+k] = v
		}
	}
	for k, o := range over {
		if !o {
			continue
		}
		switch k {
		case metricLatency:
			g.rescale(points, k, func(p *Point) (float64, bool) { return p.LatencyMs, !math.IsNaN(p.LatencyMs) })
		case metricCost:
			g.rescale(points, k, func(p *Point) (float64, bool) { return p.CostUSD, !math.IsNaN(p.CostUSD) })
		case metricSuccess: // 0/1: cannot overflow
		default:
			name := scores.names[k-metricScores]
			g.rescale(points, k, func(p *Point) (float64, bool) { return scoreOf(p.Scores, name) })
		}
	}
}

// rescale redoes metric k's means of the samples whose sum overflowed.
// Scaled by 2^-e with 2^e > n, n values of at most MaxFloat64 sum to less
// than MaxFloat64; powers of two scale exactly.
func (g *bySample) rescale(points []Point, k int, get func(*Point) (float64, bool)) {
	sums := map[int32]*[2]float64{}
	var maxN int32
	for j := range g.ids {
		c := g.counts[j*(g.m+1)+1+k]
		if v := g.means[j*g.m+k]; c > 0 && (math.IsInf(v, 0) || math.IsNaN(v)) {
			sums[int32(j)] = &[2]float64{}
			maxN = max(maxN, c)
		}
	}
	e := bits.Len32(uint32(maxN))
	scale := math.Ldexp(1, -e)
	for i := range points {
		p := &points[i]
		if p.Sample == "" {
			continue
		}
		if acc := sums[g.index[p.Sample]]; acc != nil {
			if x, ok := get(p); ok {
				neumaier(acc[:], x*scale)
			}
		}
	}
	for j, acc := range sums {
		g.means[int(j)*g.m+k] = math.Ldexp((acc[0]+acc[1])/float64(g.counts[int(j)*(g.m+1)+1+k]), e)
	}
}

// join is each baseline sample's number in the treatment, −1 where the
// treatment has none.
func join(gb, gt *bySample) []int32 {
	inT := make([]int32, len(gb.ids))
	for j := range inT {
		inT[j] = -1
	}
	for k, id := range gt.ids {
		if j, ok := gb.index[id]; ok {
			inT[j] = int32(k)
		}
	}
	return inT
}

// pairArms compares treatment t with baseline b sample by sample.
func pairArms(b, t *sample) Paired {
	gb, gt := &b.bySample, &t.bySample
	out := Paired{Key: PairKey}
	inT := join(gb, gt)
	for _, k := range inT {
		if k >= 0 {
			out.NPairs++
		}
	}
	out.BaselineOnly, out.TreatmentOnly = len(gb.ids)-out.NPairs, len(gt.ids)-out.NPairs
	var bs, ts []float64
	pairs := func(kb, kt int) ([]float64, []float64) {
		bs, ts = bs[:0], ts[:0]
		for j, k := range inT {
			if k < 0 {
				continue
			}
			bv, tv := gb.mean(j, kb), gt.mean(int(k), kt)
			if !math.IsNaN(bv) && !math.IsNaN(tv) {
				bs, ts = append(bs, bv), append(ts, tv)
			}
		}
		return bs, ts
	}
	bs, ts = pairs(metricLatency, metricLatency)
	out.Latency = PairedTest(bs, ts, false)
	bs, ts = pairs(metricCost, metricCost)
	out.Cost = PairedTest(bs, ts, false)
	bs, ts = pairs(metricSuccess, metricSuccess)
	out.Success = PairedSuccess{PairedStats: PairedTest(bs, ts, true), McNemar: mcnemarOf(bs, ts)}
	out.Scores = make(map[string]PairedStats, len(b.scores.names)+len(t.scores.names))
	one := func(name string) {
		if _, done := out.Scores[name]; done {
			return
		}
		cb, okb := b.scores.index[name]
		ct, okt := t.scores.index[name]
		if !okb || !okt {
			out.Scores[name] = PairedTest(nil, nil, true)
			return
		}
		bs, ts = pairs(metricScores+cb, metricScores+ct)
		out.Scores[name] = PairedTest(bs, ts, true)
	}
	for _, name := range b.scores.names {
		one(name)
	}
	for _, name := range t.scores.names {
		one(name)
	}
	return out
}

// mcnemarOf counts the discordant pairs among those whose success is
// exactly 0 or 1 in both arms (a sample with repetitions may have a
// fractional success).
func mcnemarOf(bs, ts []float64) McNemar {
	var b, c int
	for i := range bs {
		switch {
		case bs[i] == 1 && ts[i] == 0:
			b++
		case bs[i] == 0 && ts[i] == 1:
			c++
		}
	}
	return McNemarTest(b, c)
}
