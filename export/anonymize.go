package export

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"

	"github.com/valyala/fastjson"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Anonymizer replaces user and session ids with a keyed hash (HMAC-SHA256):
// the same id always gives the same value under one key, and the value does
// not lead back to the id without the key.
type Anonymizer struct {
	key   []byte
	arena fastjson.Arena
	p     fastjson.Parser
	buf   []byte
}

// NewAnonymizer returns an Anonymizer with key.
func NewAnonymizer(key []byte) *Anonymizer { return &Anonymizer{key: key} }

// Hash is the anonymous form of id.
func (a *Anonymizer) Hash(id string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

var anonymized = []string{"user_id", "session_id"}

// ApplyIDs anonymizes e's user_id and session_id, not its metadata.
func (a *Anonymizer) ApplyIDs(e *event.Event) {
	for _, f := range []*event.Null[string]{&e.UserID, &e.SessionID} {
		if f.Valid {
			f.V = a.Hash(f.V)
		}
	}
}

// Apply anonymizes e: its user_id and session_id, and the same keys in its
// metadata, where they were lifted from.
func (a *Anonymizer) Apply(e *event.Event) error {
	a.ApplyIDs(e)
	if len(e.Metadata) == 0 {
		return nil
	}
	v, err := a.p.ParseBytes(e.Metadata)
	if err != nil {
		return err
	}
	o, err := v.Object()
	if err != nil {
		return err
	}
	a.arena.Reset()
	changed := false
	for _, k := range anonymized {
		if x := o.Get(k); x != nil && x.Type() != fastjson.TypeNull {
			o.Set(k, a.arena.NewString(a.Hash(cell(x))))
			changed = true
		}
	}
	if changed {
		a.buf = v.MarshalTo(a.buf[:0])
		e.Metadata = a.buf
	}
	return nil
}
