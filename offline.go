package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// The offline commands read a data directory without a server.

type analyzeFlags struct {
	storagePath, experiment, format string
}

type compareFlags struct {
	storagePath, format string
	experiments         []string
	resamples           int
	seed                uint64
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runAnalyze(af analyzeFlags, w io.Writer) int {
	rec, pts, err := experiment.LoadPoints(af.storagePath, af.experiment, experiment.Filter{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s analyze: %v\n", appName, err)
		return 1
	}
	report := analysis.Analyze(pts)
	if af.format == "json" {
		err = writeJSON(w, report)
	} else {
		err = analysis.WriteReport(w, fmt.Sprintf("experiment %s — %s (condition %s, %s)", rec.ID, rec.Name, rec.Condition, rec.Status), report)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s analyze: %v\n", appName, err)
		return 1
	}
	return 0
}

func runCompare(cf compareFlags, w io.Writer) int {
	if len(cf.experiments) < 2 {
		fmt.Fprintf(os.Stderr, "%s compare: name a baseline and at least one treatment\n", appName)
		return 2
	}
	if cf.resamples < 0 {
		fmt.Fprintf(os.Stderr, "%s compare: --bootstrap-resamples must be >= 0\n", appName)
		return 2
	}
	groups := make([][]analysis.Point, len(cf.experiments))
	reports := make([]analysis.Report, len(cf.experiments))
	for i, id := range cf.experiments {
		_, pts, err := experiment.LoadPoints(cf.storagePath, id, experiment.Filter{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s compare: %v\n", appName, err)
			return 1
		}
		groups[i], reports[i] = pts, analysis.Analyze(pts)
	}
	comps := analysis.Compare(groups[0], groups[1:], analysis.CompareOptions{Resamples: cf.resamples, Seed: cf.seed})
	var err error
	if cf.format == "json" {
		byID := map[string]analysis.Comparison{}
		for i, c := range comps {
			byID[cf.experiments[i+1]] = c
		}
		err = writeJSON(w, map[string]any{"experiments": cf.experiments, "individual": reports, "comparison": byID})
	} else {
		err = analysis.WriteComparison(w, cf.experiments, reports, comps)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s compare: %v\n", appName, err)
		return 1
	}
	return 0
}
