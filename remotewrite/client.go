package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/version"
)

// client sends WriteRequests to one receiver with client_golang's
// remote-write client (protocol 1.0, snappy, retries with backoff),
// over an HTTP client built from the endpoint's prometheus/common
// settings (auth, TLS, proxy).
type client struct {
	api  *remoteapi.API
	http *http.Client
}

func newClient(e *Endpoint) (*client, error) {
	hc, err := config.NewClientFromConfig(e.HTTPClientConfig, "remote_write",
		config.WithUserAgent("crucible-telemetry/"+version.Version))
	if err != nil {
		return nil, err
	}
	hc.Timeout = time.Duration(e.RemoteTimeout)
	if len(e.Headers) > 0 {
		hc.Transport = headerTransport{headers: e.Headers, next: hc.Transport}
	}
	opts := []remoteapi.APIOption{
		remoteapi.WithAPIHTTPClient(hc),
		// The URL is the whole write URL, as in Prometheus' remote_write.
		remoteapi.WithAPIPath(""),
		// Retries go on until the receiver answers or the sidecar stops:
		// the samples wait in the log meanwhile.
		remoteapi.WithAPIBackoff(remoteapi.BackoffConfig{
			Min: time.Duration(e.QueueConfig.MinBackoff), Max: time.Duration(e.QueueConfig.MaxBackoff),
		}),
	}
	if !e.QueueConfig.RetryOnRateLimit {
		opts = append(opts, remoteapi.WithAPINoRetryOnRateLimit())
	}
	api, err := remoteapi.NewAPI(e.URL.String(), opts...)
	if err != nil {
		return nil, err
	}
	return &client{api: api, http: hc}, nil
}

// closeIdle closes the client's idle connections, once its queue is gone.
func (c *client) closeIdle() { c.http.CloseIdleConnections() }

// message is a request that encodes itself, as gogo's generated
// messages (prompb) do.
type message interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// errCancelled marks a send given up because the queue stops.
var errCancelled = errors.New("remote write stopped")

// write sends wr until the receiver acknowledges it (nil), refuses it for
// good (a 4xx: the error), or ctx is done (errCancelled). retried is
// called before each retry.
func (c *client) write(ctx context.Context, wr message, retried func(error)) error {
	_, err := c.api.Write(ctx, remoteapi.WriteV1MessageType, wr, remoteapi.WithWriteRetryCallback(retried))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", errCancelled, ctx.Err())
	}
	return err
}

// headerTransport sets the endpoint's headers (X-Scope-OrgID, say) on
// every request.
type headerTransport struct {
	headers map[string]string
	next    http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.headers {
		r.Header.Set(k, v)
	}
	return t.next.RoundTrip(r)
}
