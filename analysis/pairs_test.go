package analysis

import (
	"bytes"
	"strings"
	"testing"
)

// TestPairsAgreeWithNumpy against the per-sample means and the sorting
// written out in Python.
func TestPairsAgreeWithNumpy(t *testing.T) {
	data, exp := loadDatasets(t), loadExpected(t)
	for name, c := range exp["_pairs"] {
		t.Run(name, func(t *testing.T) {
			cm := c.(map[string]any)
			got, err := Pairs(data[cm["baseline"].(string)], data[cm["treatment"].(string)], cm["metric"].(string), int(cm["limit"].(float64)))
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range agree("pairs_"+name, toGeneric(t, got), cm["expected"]) {
				t.Error(d)
			}
		})
	}
}

func TestPairsRefusesUnknownMetrics(t *testing.T) {
	for _, m := range []string{"", "latency_ms", "score:", "scores:x", "Success"} {
		_, err := Pairs(nil, nil, m, 0)
		if err == nil || !strings.Contains(err.Error(), "score:<name>") {
			t.Errorf("%q: %v", m, err)
		}
	}
	pl, err := Pairs(nil, nil, "score:a:b", 0) // score names may hold colons
	if err != nil || pl.Pairs == nil || pl.Key != "sample_id" {
		t.Errorf("score:a:b: %+v %v", pl, err)
	}
}

func TestWritePairs(t *testing.T) {
	pl := PairList{Key: "sample_id", Metric: "latency", Improved: 2, Regressed: 1, Ties: 1, Pairs: []Pair{
		{SampleID: "q\t7", Baseline: 120, Treatment: 80, Diff: -40},
		{SampleID: "q2", Baseline: 100, Treatment: 110.5, Diff: 10.5},
	}}
	var out bytes.Buffer
	if err := WritePairs(&out, "ctl → trt", pl); err != nil {
		t.Fatal(err)
	}
	want := `ctl → trt
latency paired by sample_id: 4 pairs; the treatment is better in 2, worse in 1, equal in 1
the 2 largest differences (treatment − baseline):
sample_id  baseline  treatment  diff
"q\t7"     120.00    80.00      -40.00
q2         100.00    110.50     +10.50
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}
