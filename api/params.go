package api

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// Query parameters of the routes that take them. Any other is refused, so a
// misspelt filter (?sucess=false) cannot silently select everything.
var (
	filterParams  = []string{"event", "condition", "model", "provider", "success", "from", "to", "last"}
	eventsParams  = append(slices.Clip(filterParams), "last_n", "limit")
	listParams    = []string{"status", "tag"}
	metricsParams = append(slices.Clip(filterParams), "cluster")
	windowsParams = append(slices.Clip(filterParams), "size", "step")
	compareParams = append(slices.Clip(filterParams), "experiments", "bootstrap_resamples", "seed", "sequential_tuning", "allocation", "cluster")
	pairsParams   = append(slices.Clip(filterParams), "experiments", "metric", "limit")
	powerParams   = append(slices.Clip(filterParams), "metric", "mde", "alpha", "power")
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
		if s := event.Closest(name, allowed); s != "" {
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
