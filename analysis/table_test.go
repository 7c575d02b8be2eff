package analysis

import (
	"bytes"
	"fmt"
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

// TestTablesWithClusters: the clustered errors appear, as rows of their
// own, only when the analysis has them.
func TestTablesWithClusters(t *testing.T) {
	data := loadDatasets(t)
	base, treat := data["clu_sessions_base"], data["clu_sessions_treat"]
	srm, _ := SampleRatio([]int64{int64(len(base)), int64(len(treat))}, nil)
	for _, clustered := range []bool{false, true} {
		reports := []Report{
			AnalyzeWith(append([]Point(nil), base...), AnalyzeOptions{Clustered: clustered}),
			AnalyzeWith(append([]Point(nil), treat...), AnalyzeOptions{Clustered: clustered}),
		}
		comps := Compare(base, [][]Point{treat}, CompareOptions{Resamples: 50, Seed: 1, Clustered: clustered})
		var r, c bytes.Buffer
		if err := WriteReport(&r, "base", reports[0]); err != nil {
			t.Fatal(err)
		}
		if err := WriteComparison(&c, []string{"base", "treat"}, reports, comps, srm); err != nil {
			t.Fatal(err)
		}
		var section []string
		in := false
		for _, line := range strings.Split(r.String(), "\n") {
			if strings.HasPrefix(line, "clustered") {
				in = true
			} else if in && strings.TrimSpace(line) == "" {
				in = false
			}
			if in {
				section = append(section, strings.Join(strings.Fields(line), " "))
			}
		}
		rows := strings.Count(c.String(), "\n  clustered ")
		if !clustered {
			if len(section) > 0 || rows > 0 {
				t.Errorf("clustered rows without clusters:\n%s\n%s", r.String(), c.String())
			}
			continue
		}
		lat := reports[0].Latency
		want := "latency (ms) " + fmt.Sprint(lat.Count) + " " + f(lat.Mean, 2) + " " + g(*lat.MeanSEClustered, 4) + " " + ci(*lat.MeanCI95Clustered, 2)
		if len(section) != 6 || section[1] != want || !strings.HasPrefix(section[3], "success rate") || !strings.HasPrefix(section[5], "score judge") {
			t.Errorf("clustered section %q, want the header, latency %q, cost, success, two scores", section, want)
		}
		// Latency, success rate, cost and two scores.
		if rows != 5 || !strings.Contains(c.String(), ci(*comps[0].Latency.DiffMeanCI95Clustered, 2)) {
			t.Errorf("%d clustered rows:\n%s", rows, c.String())
		}
	}
}
