package analysis

import (
	"math"
	"strings"
)

// Clustered standard errors (SPEC §14). Events of one cluster (one session,
// one user, one evaluation sample …) are not independent, so the classical
// standard error of a mean, which treats every event as its own draw, is
// too small. The clustered one sums the deviations within each cluster
// before squaring:
//
//	se = √(Σ_c (Σ_{i∈c} (x_i − x̄))²) / n,
//
// over the n events that have the metric; an event without the cluster key
// is a cluster of its own. It is undefined (null) for n < 2 and for fewer
// than two clusters, where it is 0 whatever the data. A difference of two
// means has se = √(se_B² + se_T²). Intervals are estimate ± zClustered·se.

// zClustered is the normal 97.5th percentile the clustered intervals use.
const zClustered = 1.959963984540054

// noCluster is the cluster number of an event without the key: a cluster
// of its own.
const noCluster = -1

// clusters numbers the clusters of an arm's events in the order they first
// appear.
type clusters struct {
	index  map[string]int32
	last   string // events of one cluster are often adjacent
	lastID int32
}

// of is the number of p's cluster, noCluster when p has none.
func (c *clusters) of(p *Point) int32 {
	if !p.HasCluster {
		return noCluster
	}
	if c.index != nil && p.Cluster == c.last {
		return c.lastID
	}
	id, ok := c.index[p.Cluster]
	if !ok {
		if c.index == nil {
			c.index = map[string]int32{}
		}
		id = int32(len(c.index))
		// The key in memory of its own, beside the keys before it, rather
		// than in the event's: the map's comparisons then read compact
		// memory.
		c.index[strings.Clone(p.Cluster)] = id
	}
	c.last, c.lastID = p.Cluster, id
	return id
}

// n is the number of clusters numbered.
func (c *clusters) n() int { return len(c.index) }

// successByCluster counts judged events and successes per cluster, and
// those of the events without the key, for the clustered standard error of
// a success rate.
type successByCluster struct {
	judged, successful []int64 // by cluster number
	loneJudged         int64   // events without the key
	loneSuccessful     int64
}

func (s *successByCluster) add(cluster int32, success int8) {
	if cluster == noCluster {
		s.loneJudged++
		s.loneSuccessful += int64(success)
		return
	}
	for int(cluster) >= len(s.judged) {
		s.judged = append(s.judged, 0)
		s.successful = append(s.successful, 0)
	}
	s.judged[cluster]++
	s.successful[cluster] += int64(success)
}

// se is the clustered standard error of the success rate k/n, success
// counted 1 and failure 0 over the judged events. With p = k/n a cluster's
// summed deviation is k_c − n_c·k/n = (k_c·n − n_c·k)/n, whose numerator
// is an exact integer while n² fits int64; so se = √(Σ_c num_c²)/n².
func (s *successByCluster) se() Null {
	var n, k int64
	groups := s.loneJudged
	for c, nc := range s.judged {
		if nc > 0 {
			n += nc
			k += s.successful[c]
			groups++
		}
	}
	n += s.loneJudged
	k += s.loneSuccessful
	if n < 2 || groups < 2 {
		return NaN
	}
	exact := n <= 3_037_000_499 // n² ≤ MaxInt64
	num := func(kc, nc int64) float64 {
		if exact {
			return float64(kc*n - nc*k)
		}
		return float64(kc)*float64(n) - float64(nc)*float64(k)
	}
	var acc [2]float64
	for c, nc := range s.judged {
		if nc > 0 {
			d := num(s.successful[c], nc)
			neumaier(acc[:], d*d)
		}
	}
	// Each event without the key: n − k for a success, −k for a failure.
	up, down := num(1, 1), num(0, 1)
	neumaier(acc[:], float64(s.loneSuccessful)*up*up)
	neumaier(acc[:], float64(s.loneJudged-s.loneSuccessful)*down*down)
	nf := float64(n)
	return Null(math.Sqrt(acc[0]+acc[1]) / nf / nf)
}

// clusterSums is scratch space for clusteredSE: per cluster a Neumaier sum
// of deviations, reused across metrics.
type clusterSums struct {
	acc []float64 // 2 per cluster: sum, compensation
}

// clusteredSE is the clustered standard error of the mean of xs, whose
// i-th value is of cluster cl[i] (noCluster: a cluster of its own) among
// nc clusters; two passes, the second summing the deviations from the
// mean with compensation. NaN for fewer than two values or clusters.
func (cs *clusterSums) clusteredSE(xs []float64, cl []int32, nc int) Null {
	if len(xs) < 2 || !twoClusters(cl) {
		return NaN
	}
	m := Mean(xs)
	if math.IsNaN(m) || math.IsInf(m, 0) {
		return NaN
	}
	if v := cs.sumSquares(xs, cl, nc, m, 1); !math.IsInf(v, 0) && !math.IsNaN(v) {
		return finite(math.Sqrt(v) / float64(len(xs)))
	}
	// Deviations, their sums or their squares beyond float64: scaled by
	// 2^-k so that every deviation is below 1, no sum of n of them reaches
	// n, and no square n².
	var spread float64
	for _, x := range xs {
		spread = max(spread, math.Abs(x), math.Abs(m))
	}
	_, e := math.Frexp(spread)
	k := e + 1
	v := cs.sumSquares(xs, cl, nc, m, math.Ldexp(1, -k))
	return finite(math.Ldexp(math.Sqrt(v)/float64(len(xs)), k))
}

// sumSquares is Σ_c (Σ_{i∈c} (x_i·scale − m·scale))², scale a power of two.
func (cs *clusterSums) sumSquares(xs []float64, cl []int32, nc int, m, scale float64) float64 {
	if cap(cs.acc) < 2*nc {
		cs.acc = make([]float64, 2*nc)
	}
	acc := cs.acc[:2*nc]
	clear(acc)
	var lone [2]float64
	ms := m * scale
	for i, x := range xs {
		d := x*scale - ms
		if c := cl[i]; c == noCluster {
			neumaier(lone[:], d*d)
		} else {
			neumaier(acc[2*c:2*c+2], d)
		}
	}
	out := lone
	for c := 0; c < nc; c++ {
		if d := acc[2*c] + acc[2*c+1]; d != 0 {
			neumaier(out[:], d*d)
		}
	}
	return out[0] + out[1]
}

// twoClusters tells whether cl names at least two clusters (each noCluster
// entry is one of its own).
func twoClusters(cl []int32) bool {
	if len(cl) < 2 {
		return false
	}
	first := cl[0]
	if first == noCluster {
		return true
	}
	for _, c := range cl[1:] {
		if c != first {
			return true
		}
	}
	return false
}

// finite is x, or NaN when it is beyond float64.
func finite(x float64) Null {
	if math.IsInf(x, 0) {
		return NaN
	}
	return Null(x)
}

// clusteredCI is estimate ± zClustered·se, null when either is.
func clusteredCI(estimate, se Null) [2]Null {
	if !estimate.Valid() || !se.Valid() {
		return [2]Null{NaN, NaN}
	}
	h := zClustered * float64(se)
	return [2]Null{Null(float64(estimate) - h), Null(float64(estimate) + h)}
}

// clusteredDiffCI is the interval of a difference of two independent
// arms' means: diff ± zClustered·√(se_B² + se_T²).
func clusteredDiffCI(diff, seB, seT Null) *[2]Null {
	ci := [2]Null{NaN, NaN}
	if seB.Valid() && seT.Valid() {
		ci = clusteredCI(diff, Null(math.Hypot(float64(seB), float64(seT))))
	}
	return &ci
}

// clusteredMean is a mean's clustered standard error and interval, as the
// JSON shows them: pointers, so that an analysis without ?cluster= has
// neither.
func clusteredMean(mean, se Null) (*Null, *[2]Null) {
	ci := clusteredCI(mean, se)
	return &se, &ci
}
