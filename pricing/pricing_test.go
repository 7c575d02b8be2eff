package pricing

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestDefaultSeedPrices(t *testing.T) {
	tab := Default()
	seed := map[string][2]float64{
		"gemini-2.0-flash-exp": {0.075, 0.30},
		"gpt-4":                {30, 60},
		"gpt-4-turbo":          {10, 30},
		"gpt-3.5-turbo":        {0.5, 1.5},
		"claude-3-opus":        {15, 75},
		"claude-3-sonnet":      {3, 15},
	}
	for model, want := range seed {
		t.Run(model, func(t *testing.T) {
			p, ok := tab.Lookup(model)
			if !ok || p.Input != want[0] || p.Output != want[1] {
				t.Errorf("got %+v ok=%v, want %v", p, ok, want)
			}
		})
	}
	for _, m := range []string{"gpt-4o", "gpt-5", "claude-sonnet-4-5", "gemini-2.5-pro"} {
		t.Run(m, func(t *testing.T) {
			if _, ok := tab.Lookup(m); !ok {
				t.Errorf("current model %s missing from the default table", m)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	tab := Default()
	cases := []struct {
		model string
		base  string
		ok    bool
	}{
		{"gpt-4", "gpt-4", true},
		{"GPT-4", "gpt-4", true},
		{"gpt-4o-2024-08-06", "gpt-4o", true},
		{"gpt-4-0613", "gpt-4", true},
		{"claude-3-opus-20240229", "claude-3-opus", true},
		{"claude-3-5-sonnet@20240620", "claude-3-5-sonnet", true},
		{"claude-3-5-sonnet-latest", "claude-3-5-sonnet", true},
		{"openai/gpt-4o-mini", "gpt-4o-mini", true},
		{"llama-3-70b", "", false},
		{"", "", false},
		{"gpt-4-unknown", "", false},
	}
	for _, c := range cases {
		t.Run(c.model, func(t *testing.T) {
			// The second lookup of a name that is not a key is remembered.
			for range 2 {
				p, ok := tab.Lookup(c.model)
				if ok != c.ok {
					t.Fatalf("ok = %v, want %v", ok, c.ok)
				}
				if ok && p != tab.Models[c.base] {
					t.Fatalf("got %+v, want price of %s", p, c.base)
				}
			}
		})
	}
}

func TestCost(t *testing.T) {
	tab := Default()
	// gpt-4: 30 in, 60 out per 1M tokens.
	got, ok := tab.Cost("gpt-4", 100, 200, 0)
	if !ok || math.Abs(got-0.015) > 1e-15 {
		t.Fatalf("gpt-4 cost = %v ok=%v, want 0.015", got, ok)
	}
	// gpt-4o: 2.5 in, 1.25 cached, 10 out.
	got, _ = tab.Cost("gpt-4o", 1000, 0, 400)
	want := (600*2.5 + 400*1.25) / 1e6
	if math.Abs(got-want) > 1e-15 {
		t.Fatalf("cached cost = %v, want %v", got, want)
	}
	if _, ok := tab.Cost("mystery-model", 1, 1, 0); ok {
		t.Fatal("unknown model must have no price")
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name, doc string
		wantErr   bool
	}{
		{"ok", "models:\n  My-Model: {input: 1, output: 2}\n", false},
		{"default only", "default: {input: 1, output: 1}\n", false},
		{"unknown key", "models:\n  m: {input: 1, output: 2, bogus: 3}\n", true},
		{"negative", "models:\n  m: {input: -1, output: 2}\n", true},
		{"duplicate after folding", "models:\n  m: {input: 1, output: 2}\n  M: {input: 1, output: 2}\n", true},
		{"empty", "", true},
		{"not yaml", "models: [", true},
		{"nan", "models:\n  m: {input: .nan, output: 2}\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, err := Parse(strings.NewReader(c.doc))
			if c.wantErr {
				if err == nil || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.name == "ok" {
				if _, ok := tab.Lookup("my-model"); !ok {
					t.Fatal("model names must fold case")
				}
			}
		})
	}
}

func TestDefaultPriceForUnknown(t *testing.T) {
	tab, err := Parse(strings.NewReader("default: {input: 1, output: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, ok := tab.Cost("anything", 1e6, 1e6, 0)
	if !ok || got != 3 {
		t.Fatalf("got %v %v, want 3 true", got, ok)
	}
}

// Past maxResolved names, lookups still resolve, uncached.
func TestLookupCacheBounded(t *testing.T) {
	tab := Default()
	for i := range maxResolved + 10 {
		name := fmt.Sprintf("gpt-4o-%04d-01-01", i%10000)
		if _, ok := tab.Lookup(name); !ok {
			t.Fatalf("%s: no price", name)
		}
	}
	if n := tab.nresolved.Load(); n != maxResolved {
		t.Fatalf("%d names remembered, want %d", n, maxResolved)
	}
	if p, ok := tab.Lookup("claude-3-opus-20240229"); !ok || p != tab.Models["claude-3-opus"] {
		t.Fatalf("an uncached lookup: %+v %v", p, ok)
	}
}
