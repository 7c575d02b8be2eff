package api

import (
	"net/url"

	"github.com/crucible-telemetry/crucible-telemetry/event"
	"github.com/crucible-telemetry/crucible-telemetry/experiment"
)

// clusterFilter reads ?cluster= (SPEC §14), the key whose values group
// events into clusters for the clustered standard errors, into f. Given
// empty or unknown, it is a bad request.
func clusterFilter(q url.Values, f *experiment.Filter) error {
	if !q.Has("cluster") {
		return nil
	}
	k, err := event.ParseClusterKey(q.Get("cluster"))
	if err != nil {
		return err
	}
	f.Cluster = &k
	return nil
}
