package dashboards

import (
	"math"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/crucible-telemetry/crucible-telemetry/analysis"
)

// TestSampleRatioPanel: the A/B dashboard turns red at the χ² whose p is
// the API's mismatch threshold.
func TestSampleRatioPanel(t *testing.T) {
	if p := (distuv.ChiSquared{K: 1}).Survival(srmCritical); math.Abs(p-analysis.SRMThreshold) > 1e-12 {
		t.Errorf("χ²(1) survival at %v is %v, want %v", srmCritical, p, analysis.SRMThreshold)
	}
	found := false
	for _, p := range Comparison().Panels {
		if strings.HasPrefix(p.Title, "Sample-ratio χ²") {
			found = true
			steps := p.FieldConfig.Defaults.Thresholds.Steps
			if len(p.Targets) != 1 || !strings.Contains(p.Targets[0].Expr, "crucible_events_total") || *steps[len(steps)-1].Value != srmCritical {
				t.Errorf("panel %+v", p)
			}
		}
	}
	if !found {
		t.Error("no sample-ratio panel")
	}
}
