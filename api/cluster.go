package api

import (
	"fmt"
	"net/url"
	"strings"

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
		// The parser's message, without the "invalid event" of its
		// sentinel: the request, not an event, is at fault.
		return fmt.Errorf("%w: %s", errBadRequest, strings.TrimPrefix(err.Error(), event.ErrInvalid.Error()+": "))
	}
	f.Cluster = &k
	return nil
}
