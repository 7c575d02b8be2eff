package event

// LabelOverflow says which of an event's capped labels — event, model,
// provider — are counted under OverflowValue: past a per-experiment cap of
// distinct values, storage puts later values there (SPEC §6). Storage
// decides once per event and stores the decision with it; the TSDB's series
// and the live metrics both follow it, also after a restart.
type LabelOverflow uint8

// The capped labels.
const (
	OverflowEvent LabelOverflow = 1 << iota
	OverflowModel
	OverflowProvider
)

// OverflowValue is the label value of every value past the cap.
const OverflowValue = "other"
