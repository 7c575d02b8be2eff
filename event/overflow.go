package event

// LabelOverflow says which of an event's capped labels — event, model,
// provider, and the score label of each of its scores — are counted under
// OverflowValue: past a per-experiment cap of distinct values, storage puts
// later values there (SPEC §6, §13). Storage decides once per event and
// stores the decision with it; the TSDB's series and the live metrics both
// follow it, also after a restart.
type LabelOverflow uint64

// The capped labels.
const (
	OverflowEvent LabelOverflow = 1 << iota
	OverflowModel
	OverflowProvider
)

// overflowScoreShift is the bit of the first score: Scores[i] is bit
// overflowScoreShift+i (MaxScores fit).
const overflowScoreShift = 8

var _ LabelOverflow = 1 << (overflowScoreShift + MaxScores - 1)

// OverflowScore is the bit of the event's i-th score (Event.Scores order).
func OverflowScore(i int) LabelOverflow { return 1 << (overflowScoreShift + i) }

// ScoreMask is o's scores' bits, bit i for Scores[i].
func (o LabelOverflow) ScoreMask() uint32 { return uint32(o >> overflowScoreShift) }

// ScoreOverflowOf is the LabelOverflow of a ScoreMask.
func ScoreOverflowOf(mask uint32) LabelOverflow { return LabelOverflow(mask) << overflowScoreShift }

// Labels is o without the scores' bits.
func (o LabelOverflow) Labels() LabelOverflow { return o & (1<<overflowScoreShift - 1) }

// Scores tells whether any score's name overflowed.
func (o LabelOverflow) Scores() bool { return o>>overflowScoreShift != 0 }

// OverflowValue is the label value of every value past the cap.
const OverflowValue = "other"
