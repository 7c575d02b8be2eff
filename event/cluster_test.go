package event

import (
	"strings"
	"testing"

	"github.com/valyala/fastjson"
)

func TestClusterKey(t *testing.T) {
	e, err := Parse([]byte(`{"event_name":"x","metadata":{"session_id":"s-1","user_id":7,"sample_id":"q","team":"red","n":7,"deep":{"a":1},"gone":null}}`), testNow, testPrices)
	if err != nil {
		t.Fatal(err)
	}
	var p fastjson.Parser
	for _, c := range []struct {
		key, want string
		has       bool
	}{
		{"session_id", "s-1", true}, {"user_id", "7", true}, {"sample_id", "q", true}, {"cohort", "", false},
		{"metadata.team", "red", true}, {"metadata.n", "7", true}, {"metadata.deep", `{"a":1}`, true},
		{"metadata.gone", "", false}, {"metadata.absent", "", false},
	} {
		t.Run(c.key, func(t *testing.T) {
			k, err := ParseClusterKey(c.key)
			if err != nil {
				t.Fatal(err)
			}
			if k.String() != c.key || k.NeedsObjects() != strings.HasPrefix(c.key, "metadata.") {
				t.Fatalf("key %v, objects %v", k, k.NeedsObjects())
			}
			if v, ok := k.Of(e, &p); v != c.want || ok != c.has {
				t.Fatalf("cluster %q %v, want %q %v", v, ok, c.want, c.has)
			}
		})
	}
	for _, bad := range []string{"", "session", "metadata.", "model", "metadata"} {
		if _, err := ParseClusterKey(bad); err == nil || !strings.Contains(err.Error(), "cluster must be session_id, user_id, cohort, sample_id or metadata.<key>") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
