package experiment

import (
	"cmp"
	"fmt"
	"slices"

	json "github.com/goccy/go-json"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Filter selects stored events (SPEC §7). Zero fields select everything;
// From and To are inclusive µs.
type Filter struct {
	Event, Condition, Model, Provider string
	Success                           *bool
	From, To                          *int64
	LastN                             int // keep only the newest N matches
	Limit                             int // then at most Limit
}

// filterView is the part of a stored event a filter looks at.
type filterView struct {
	EventID   string  `json:"event_id"`
	EventName string  `json:"event_name"`
	Timestamp int64   `json:"timestamp"`
	Condition string  `json:"condition"`
	Model     *string `json:"model"`
	Provider  *string `json:"provider"`
	Success   *bool   `json:"success"`
}

func (f *Filter) match(v *filterView) bool {
	return (f.Event == "" || v.EventName == f.Event) &&
		(f.Condition == "" || v.Condition == f.Condition) &&
		(f.Model == "" || (v.Model != nil && *v.Model == f.Model)) &&
		(f.Provider == "" || (v.Provider != nil && *v.Provider == f.Provider)) &&
		(f.Success == nil || (v.Success != nil && *v.Success == *f.Success)) &&
		(f.From == nil || v.Timestamp >= *f.From) &&
		(f.To == nil || v.Timestamp <= *f.To)
}

type match struct {
	ts   int64
	id   string
	json json.RawMessage
}

// Events returns the stored events that match f, as stored JSON, ascending
// by (timestamp, event_id).
func (m *Manager) Events(id string, f Filter) ([]json.RawMessage, error) {
	x, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	var out []match
	var v filterView
	err = x.store.Scan(func(r *tsdbstore.Record) error {
		v = filterView{}
		if err := json.Unmarshal(r.JSON, &v); err != nil {
			return fmt.Errorf("%w: %v: %w", tsdbstore.ErrCorrupt, r.Pos, err)
		}
		if f.match(&v) {
			out = append(out, match{v.Timestamp, v.EventID, append(json.RawMessage(nil), r.JSON...)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b match) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.id, b.id))
	})
	if f.LastN > 0 && len(out) > f.LastN {
		out = out[len(out)-f.LastN:]
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	res := make([]json.RawMessage, len(out))
	for i, mt := range out {
		res[i] = mt.json
	}
	return res, nil
}
