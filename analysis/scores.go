package analysis

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// ScoreDescription summarises one named quality score over the events
// that carry it (SPEC §13). MeanCI95 is the t interval of the mean,
// mean ± t(0.975, n−1)·sd/√n, null for fewer than two values.
type ScoreDescription struct {
	Count    int     `json:"count"`
	Mean     Null    `json:"mean"`
	StdDev   Null    `json:"std_dev"`
	Median   Null    `json:"median"`
	Min      Null    `json:"min"`
	Max      Null    `json:"max"`
	MeanCI95 [2]Null `json:"mean_ci95"`
	// MeanSEClustered and MeanCI95Clustered are the mean's clustered
	// standard error and interval (SPEC §14), only with clusters.
	MeanSEClustered   *Null    `json:"mean_se_clustered,omitempty"`
	MeanCI95Clustered *[2]Null `json:"mean_ci95_clustered,omitempty"`
}

// DescribeScore describes the values of one score, reordering them.
func DescribeScore(xs []float64) ScoreDescription {
	d := ScoreDescription{Count: len(xs), Mean: NaN, StdDev: NaN, Median: NaN, Min: NaN, Max: NaN, MeanCI95: [2]Null{NaN, NaN}}
	if len(xs) == 0 {
		return d
	}
	mean, sd := Mean(xs), StdDev(xs)
	d.Mean, d.StdDev, d.Min, d.Max = Null(mean), Null(sd), Null(minOf(xs)), Null(maxOf(xs))
	d.Median = Null(Percentiles(xs, 50)[0])
	d.MeanCI95 = meanCI95(mean, sd, len(xs))
	return d
}

// meanCI95 is mean ± t(0.975, n−1)·sd/√n; [NaN, NaN] for n < 2.
func meanCI95(mean, sd float64, n int) [2]Null {
	if n < 2 {
		return [2]Null{NaN, NaN}
	}
	h := t975(n-1) * (sd / math.Sqrt(float64(n))) // sd/√n first: sd may be near MaxFloat64
	return [2]Null{Null(mean - h), Null(mean + h)}
}

// t975 is Student's t 97.5th percentile with df degrees of freedom.
func t975(df int) float64 {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(df)}.Quantile(0.975)
}

// scoreValues gathers each score name's values over events, in the order
// the names first appear. Events mostly carry the same names, so the
// column of an event's i-th score is first guessed from the previous
// event's: no map lookup in the common case.
type scoreValues struct {
	names []string
	vals  [][]float64
	index map[string]int
	last  []int // column of the previous event's i-th score
	// With clustered, cls[col][i] is the cluster of vals[col][i], and
	// setClusteredSE sets se[col], the column's clustered standard error
	// of the mean.
	clustered bool
	cls       [][]int32
	se        []Null
}

// reserve finds the score names of points and sizes each column for its
// values, so that collecting them copies nothing.
func (s *scoreValues) reserve(points []Point) {
	var counts []int
	for i := range points {
		for j, sc := range points[i].Scores {
			col := s.column(j, sc.Name)
			if col >= len(counts) {
				counts = append(counts, make([]int, col+1-len(counts))...)
			}
			counts[col]++
		}
	}
	for col, n := range counts {
		s.vals[col] = make([]float64, 0, n)
		if s.clustered {
			s.cls[col] = make([]int32, 0, n)
		}
	}
}

// add appends one event's scores (sorted by name, as Point holds them);
// an undefined (NaN) value is left out. cluster is the event's, kept when
// s is clustered.
func (s *scoreValues) add(scores []Score, cluster int32) {
	for i, sc := range scores {
		col := s.column(i, sc.Name)
		if !math.IsNaN(sc.Value) {
			s.vals[col] = append(s.vals[col], sc.Value)
			if s.clustered {
				s.cls[col] = append(s.cls[col], cluster)
			}
		}
	}
}

// setClusteredSE sets each column's clustered standard error of the
// mean, of nc clusters; before the values are reordered.
func (s *scoreValues) setClusteredSE(cs *clusterSums, nc int) {
	s.se = make([]Null, len(s.vals))
	for col, v := range s.vals {
		s.se[col] = cs.clusteredSE(v, s.cls[col], nc)
	}
}

// clusteredSEOf is the clustered standard error of name's mean, NaN when
// no event has it.
func (s *scoreValues) clusteredSEOf(name string) Null {
	if col, ok := s.index[name]; ok {
		return s.se[col]
	}
	return NaN
}

// column is the column of the name of an event's i-th score, created when
// the name is new.
func (s *scoreValues) column(i int, name string) int {
	if i < len(s.last) && s.names[s.last[i]] == name {
		return s.last[i]
	}
	col, ok := s.index[name]
	if !ok {
		if s.index == nil {
			s.index = map[string]int{}
		}
		col = len(s.names)
		s.index[name] = col
		s.names = append(s.names, name)
		s.vals = append(s.vals, nil)
		if s.clustered {
			s.cls = append(s.cls, nil)
		}
	}
	if i < len(s.last) {
		s.last[i] = col
	} else {
		s.last = append(s.last, col)
	}
	return col
}

// lookup is the values of name, nil when no event has it.
func (s *scoreValues) lookup(name string) []float64 {
	if col, ok := s.index[name]; ok {
		return s.vals[col]
	}
	return nil
}

// describe describes every score; an empty map when there are none.
// Values are reordered.
func (s *scoreValues) describe() map[string]ScoreDescription {
	out := make(map[string]ScoreDescription, len(s.names))
	for i, name := range s.names {
		d := DescribeScore(s.vals[i])
		if s.clustered {
			d.MeanSEClustered, d.MeanCI95Clustered = clusteredMean(d.Mean, s.se[i])
		}
		out[name] = d
	}
	return out
}

// scoreOf is the value of the score name among scores (sorted by name).
func scoreOf(scores []Score, name string) (float64, bool) {
	i, ok := slices.BinarySearchFunc(scores, name, func(s Score, name string) int {
		switch {
		case s.Name < name:
			return -1
		case s.Name > name:
			return 1
		}
		return 0
	})
	if !ok || math.IsNaN(scores[i].Value) {
		return 0, false
	}
	return scores[i].Value, true
}

// ScoreComparison compares one score of a treatment with the baseline's
// (SPEC §13): Welch's t-test of the means, the Mann–Whitney test, and the
// anytime-valid interval of the difference.
type ScoreComparison struct {
	MeanDiff
	MannWhitneyU     Null  `json:"mann_whitney_u"`
	MannWhitneyP     Null  `json:"mann_whitney_p"`
	MannWhitneyPHolm *Null `json:"mann_whitney_p_holm,omitempty"`
	// Sequential is the anytime-valid interval of DiffMean.
	Sequential Sequential `json:"sequential"`
}

// compareScores compares every score either side has; both sides' values
// are sorted (sortScores).
func compareScores(b, t *scoreValues, tuning float64) map[string]ScoreComparison {
	out := make(map[string]ScoreComparison, len(b.names)+len(t.names))
	one := func(name string) {
		if _, done := out[name]; done {
			return
		}
		bv, tv := b.lookup(name), t.lookup(name)
		mw := mannWhitneySorted(bv, tv)
		sc := ScoreComparison{
			MeanDiff:     meanDiff(bv, tv),
			MannWhitneyU: mw.U, MannWhitneyP: mw.P,
			Sequential: SequentialDiff(bv, tv, tuning),
		}
		if b.clustered {
			sc.DiffMeanCI95Clustered = clusteredDiffCI(sc.DiffMean, b.clusteredSEOf(name), t.clusteredSEOf(name))
		}
		out[name] = sc
	}
	for _, name := range b.names {
		one(name)
	}
	for _, name := range t.names {
		one(name)
	}
	return out
}

// sortScores sorts each score's values, for the rank test.
func (s *scoreValues) sortScores() {
	for _, v := range s.vals {
		slices.Sort(v)
	}
}

// holmScores Holm-adjusts the score p-values of several treatments, per
// score name, across the treatments that have the score.
func holmScores(out []Comparison) {
	var names []string
	seen := map[string]bool{}
	for i := range out {
		for name := range out[i].Scores {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	for _, name := range names {
		var idx []int
		var welch, mw []Null
		for i := range out {
			if s, ok := out[i].Scores[name]; ok {
				idx = append(idx, i)
				welch, mw = append(welch, s.WelchP), append(mw, s.MannWhitneyP)
			}
		}
		hw, hm := Holm(welch), Holm(mw)
		for j, i := range idx {
			s := out[i].Scores[name]
			s.WelchPHolm, s.MannWhitneyPHolm = &hw[j], &hm[j]
			out[i].Scores[name] = s
		}
	}
}
