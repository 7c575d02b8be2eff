// Package pricing holds the price table that turns token counts into USD.
//
// Prices are USD per 1M tokens. Model names match case-insensitively, and a
// dated variant (gpt-4o-2024-08-06, claude-3-opus-20240229,
// claude-3-5-sonnet@20240620) falls back to its base name. An unknown model
// has no price: callers must record the cost as unknown, never guess it.
package pricing

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// Price is what one model costs, in USD per 1M tokens.
type Price struct {
	Input       float64  `yaml:"input" json:"input"`
	Output      float64  `yaml:"output" json:"output"`
	CachedInput *float64 `yaml:"cached_input,omitempty" json:"cached_input,omitempty"`
}

// Table is an immutable price table.
type Table struct {
	AsOf    string           `yaml:"as_of,omitempty" json:"as_of,omitempty"`
	Default *Price           `yaml:"default,omitempty" json:"default,omitempty"`
	Models  map[string]Price `yaml:"models" json:"models"`

	// resolved remembers how names that are not keys of Models resolved
	// (case, provider prefix, dated variant, default): the dated-variant
	// rule is a regular expression, too slow to run on every event. Bounded
	// by maxResolved names; past it, names are resolved each time.
	resolved  sync.Map // string → resolution
	nresolved atomic.Int32
}

type resolution struct {
	p  Price
	ok bool
}

const maxResolved = 4096

// ErrInvalid marks a price table that cannot be used.
var ErrInvalid = errors.New("invalid price table")

// Parse reads a YAML price table strictly: unknown keys, negative or
// non-finite prices and duplicate model names (after case folding) are errors.
func Parse(r io.Reader) (*Table, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var t Table
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(t.Models) == 0 && t.Default == nil {
		return nil, fmt.Errorf("%w: no models and no default", ErrInvalid)
	}
	folded := make(map[string]Price, len(t.Models))
	for name, p := range t.Models {
		key := strings.ToLower(strings.TrimSpace(name))
		if key == "" {
			return nil, fmt.Errorf("%w: empty model name", ErrInvalid)
		}
		if _, dup := folded[key]; dup {
			return nil, fmt.Errorf("%w: model %q listed twice", ErrInvalid, name)
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("%w: model %q: %w", ErrInvalid, name, err)
		}
		folded[key] = p
	}
	if t.Default != nil {
		if err := t.Default.validate(); err != nil {
			return nil, fmt.Errorf("%w: default: %w", ErrInvalid, err)
		}
	}
	t.Models = folded
	return &t, nil
}

func (p Price) validate() error {
	vals := []float64{p.Input, p.Output}
	if p.CachedInput != nil {
		vals = append(vals, *p.CachedInput)
	}
	for _, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("price %v must be a finite number >= 0", v)
		}
	}
	return nil
}

// Default returns the embedded price table.
func Default() *Table {
	t, err := Parse(bytes.NewReader(defaultYAML))
	if err != nil {
		panic("embedded price table: " + err.Error())
	}
	return t
}

// datedSuffix matches the date stamps providers append to model names.
var datedSuffix = regexp.MustCompile(`(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})|-latest)$`)

// Lookup finds the price of model. The bool is false for an unknown model
// (and no default price).
func (t *Table) Lookup(model string) (Price, bool) {
	if model == "" {
		return Price{}, false
	}
	if p, ok := t.Models[model]; ok { // names are usually lower case already
		return p, true
	}
	if r, ok := t.resolved.Load(model); ok {
		r := r.(resolution)
		return r.p, r.ok
	}
	p, ok := t.resolve(model)
	if t.nresolved.Load() < maxResolved {
		if _, loaded := t.resolved.LoadOrStore(strings.Clone(model), resolution{p, ok}); !loaded {
			t.nresolved.Add(1)
		}
	}
	return p, ok
}

// resolve applies Lookup's rules past the exact name.
func (t *Table) resolve(model string) (Price, bool) {
	key := strings.ToLower(model)
	if p, ok := t.Models[key]; ok {
		return p, true
	}
	// A provider prefix ("openai/gpt-4o") names the same model.
	if i := strings.LastIndexByte(key, '/'); i >= 0 && i < len(key)-1 {
		key = key[i+1:]
		if p, ok := t.Models[key]; ok {
			return p, true
		}
	}
	if base := datedSuffix.ReplaceAllString(key, ""); base != key {
		if p, ok := t.Models[base]; ok {
			return p, true
		}
	}
	if t.Default != nil {
		return *t.Default, true
	}
	return Price{}, false
}

// Cost prices a request: prompt tokens (of which cached were served from the
// provider's prompt cache) and completion tokens. The bool is false when the
// model has no price.
func (t *Table) Cost(model string, prompt, completion, cached int64) (float64, bool) {
	p, ok := t.Lookup(model)
	if !ok {
		return 0, false
	}
	if cached > prompt {
		cached = prompt
	}
	cachedRate := p.Input
	if p.CachedInput != nil {
		cachedRate = *p.CachedInput
	}
	usd := (float64(prompt-cached)*p.Input + float64(cached)*cachedRate + float64(completion)*p.Output) / 1e6
	return usd, true
}

// Holder gives concurrent readers the current table and lets a reload swap it.
type Holder struct{ cur atomic.Pointer[Table] }

// NewHolder returns a Holder serving t.
func NewHolder(t *Table) *Holder {
	h := &Holder{}
	h.cur.Store(t)
	return h
}

// Table returns the table in force.
func (h *Holder) Table() *Table { return h.cur.Load() }

// Set replaces the table in force.
func (h *Holder) Set(t *Table) { h.cur.Store(t) }
