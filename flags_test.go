package main

import (
	"strings"
	"testing"
)

func TestExternalLabelFlags(t *testing.T) {
	for _, tc := range []struct {
		flags []string
		want  string // labels, or the error's text
	}{
		{nil, "{}"},
		{[]string{"pod=crucible-0", "cluster=eu"}, `{cluster="eu", pod="crucible-0"}`},
		{[]string{"pod=a", "pod=b"}, "given twice"},
		{[]string{"pod"}, "want NAME=VALUE"},
		{[]string{"slot=1"}, "samples carry a label of that name"},
	} {
		t.Run(strings.Join(tc.flags, ","), func(t *testing.T) {
			ls, err := externalLabels(tc.flags)
			got := ls.String()
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("%v: %s, want %s", tc.flags, got, tc.want)
			}
		})
	}
}
