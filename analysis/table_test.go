package analysis

import (
	"bytes"
	"strings"
	"testing"
)

// tables prints the report of the first set and the comparison of all.
func tables(t *testing.T, sets ...string) (string, string) {
	t.Helper()
	data := loadDatasets(t)
	var reports []Report
	var treatments [][]Point
	for i, s := range sets {
		reports = append(reports, Analyze(append([]Point(nil), data[s]...)))
		if i > 0 {
			treatments = append(treatments, data[s])
		}
	}
	comps := Compare(data[sets[0]], treatments, CompareOptions{Resamples: 100, Seed: 1})
	srm, err := SampleRatio([]int64{1, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var r, c bytes.Buffer
	if err := WriteReport(&r, sets[0], reports[0]); err != nil {
		t.Fatal(err)
	}
	if err := WriteComparison(&c, sets, reports, comps, srm); err != nil {
		t.Fatal(err)
	}
	return r.String(), c.String()
}

func TestTablesWithoutScoresOrSamples(t *testing.T) {
	report, comparison := tables(t, "control", "treatment_a")
	for _, s := range []string{report, comparison} {
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(line, "score") || strings.HasPrefix(line, "paired") || strings.HasPrefix(line, "McNemar") {
				t.Errorf("line %q without scores or samples", line)
			}
		}
	}
}

func TestTablesWithScoresAndSamples(t *testing.T) {
	report, comparison := tables(t, "eval_base", "eval_treat_a")
	lines := func(s string) map[string]string {
		out := map[string]string{}
		for _, line := range strings.Split(s, "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				if k := f[0] + " " + strings.Join(f[1:min(2, len(f))], ""); out[k] == "" {
					out[k] = line // the first: a score has an unpaired line, then a paired one
				}
			}
		}
		return out
	}
	r, c := lines(report), lines(comparison)
	for _, want := range []string{"scores count", "exact_match 693", "judge.helpfulness 609"} {
		if _, ok := r[want]; !ok {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	for _, want := range []string{"score exact_match", "score judge.helpfulness", "paired by", "paired n", "latency (ms)", "success 309", "McNemar (pairs"} {
		if _, ok := c[want]; !ok {
			t.Errorf("comparison lacks %q:\n%s", want, comparison)
		}
	}
	if l := c["paired by"]; !strings.Contains(l, "320 samples in both arms (20 in the baseline only, 20 in the treatment only)") {
		t.Errorf("paired line %q", l)
	}
	if l := c["McNemar (pairs"]; !strings.Contains(l, "5 succeeded in the baseline only, 17 in the treatment only; p=0.0169 *") {
		t.Errorf("McNemar line %q", l)
	}
	// The classical and the sequential interval, as on the latency line.
	if l := c["score exact_match"]; strings.Count(l, "[") != 2 {
		t.Errorf("score line %q", l)
	}
}
