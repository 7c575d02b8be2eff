package event

import (
	"strings"

	"github.com/valyala/fastjson"
)

// ClusterKey names what groups events into clusters for clustered standard
// errors (SPEC §14): session_id, user_id, cohort, sample_id, or
// metadata.<key>, a top-level key of the metadata object.
type ClusterKey struct {
	field    string // one of the lifted fields, or "metadata"
	metadata string // the metadata key
}

// ParseClusterKey reads a ?cluster= value.
func ParseClusterKey(s string) (ClusterKey, error) {
	switch s {
	case "session_id", "user_id", "cohort", "sample_id":
		return ClusterKey{field: s}, nil
	}
	if k, ok := strings.CutPrefix(s, "metadata."); ok && k != "" {
		return ClusterKey{field: "metadata", metadata: k}, nil
	}
	return ClusterKey{}, invalid("cluster must be session_id, user_id, cohort, sample_id or metadata.<key>, got %q", shorten([]byte(s)))
}

// String is the key as a query names it.
func (k ClusterKey) String() string {
	if k.field == "metadata" {
		return "metadata." + k.metadata
	}
	return k.field
}

// IsSampleID tells whether the key is sample_id, which the analysis'
// points index keeps.
func (k ClusterKey) IsSampleID() bool { return k.field == "sample_id" }

// NeedsObjects tells whether the key is read from the metadata object, so
// that events must be decoded with their objects.
func (k ClusterKey) NeedsObjects() bool { return k.field == "metadata" }

// Of returns e's cluster: the key's value, or false when e lacks it (null
// counts as lacking). A metadata value that is not a string is its JSON
// text, so 7 and "7" are different clusters. p parses e.Metadata.
func (k ClusterKey) Of(e *Event, p *fastjson.Parser) (string, bool) {
	var v Null[string]
	switch k.field {
	case "session_id":
		v = e.SessionID
	case "user_id":
		v = e.UserID
	case "cohort":
		v = e.Cohort
	case "sample_id":
		v = e.SampleID
	case "metadata":
		if len(e.Metadata) == 0 {
			return "", false
		}
		m, err := p.ParseBytes(e.Metadata)
		if err != nil {
			return "", false
		}
		x := m.Get(k.metadata)
		if x == nil || x.Type() == fastjson.TypeNull {
			return "", false
		}
		if x.Type() == fastjson.TypeString {
			return string(x.GetStringBytes()), true
		}
		return x.String(), true
	}
	return v.V, v.Valid
}
