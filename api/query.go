package api

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Query parameters of the routes that take them. Any other is refused, so a
// misspelt filter (?sucess=false) cannot silently select everything.
var (
	filterParams  = []string{"event", "condition", "model", "provider", "success", "from", "to", "last"}
	eventsParams  = append(slices.Clip(filterParams), "last_n", "limit")
	listParams    = []string{"status", "tag"}
	windowsParams = append(slices.Clip(filterParams), "size", "step")
	compareParams = append(slices.Clip(filterParams), "experiments", "bootstrap_resamples", "seed")
	exportParams  = append(slices.Clip(filterParams), "format", "flatten", "anonymize")
)

// checkQuery refuses a query with a parameter outside allowed, or one given
// twice, and says which and what would have been meant.
func checkQuery(rawQuery string, allowed []string) error {
	if rawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return fmt.Errorf("%w: malformed query string: %v", errBadRequest, err)
	}
	var unknown []string
	for name, vs := range q {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
			continue
		}
		if len(vs) > 1 {
			return fmt.Errorf("%w: query parameter %q given %d times; it takes one value", errBadRequest, name, len(vs))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	var b strings.Builder
	for i, name := range unknown {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", name)
		if s := closest(name, allowed); s != "" {
			fmt.Fprintf(&b, " (did you mean %q?)", s)
		}
	}
	noun := "parameter"
	if len(unknown) > 1 {
		noun = "parameters"
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%w: unknown query %s %s; this route takes none", errBadRequest, noun, b.String())
	}
	return fmt.Errorf("%w: unknown query %s %s; this route takes %s", errBadRequest, noun, b.String(), strings.Join(allowed, ", "))
}

// closest returns the allowed name nearest to name by edit distance, if
// it is near enough to be a slip of the keyboard.
func closest(name string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(name), a); d < bestD && d < len(a) {
			best, bestD = a, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
