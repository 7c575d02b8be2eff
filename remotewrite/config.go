package remotewrite

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v2"
)

// Config is the file --remote-write.config-file names: the remote_write
// section of a Prometheus configuration file, as Prometheus reads it, so
// that a user's existing receiver settings paste in unchanged.
type Config struct {
	RemoteWrite []*Endpoint `yaml:"remote_write"`
}

// Endpoint is one receiver. The HTTP client settings (basic_auth,
// authorization, oauth2, tls_config, proxy_url, http_headers, ...) are
// prometheus/common's, as in Prometheus.
type Endpoint struct {
	URL           *config.URL       `yaml:"url"`
	Name          string            `yaml:"name,omitempty"`
	RemoteTimeout model.Duration    `yaml:"remote_timeout,omitempty"`
	Headers       map[string]string `yaml:"headers,omitempty"`
	// HTTPClientConfig is inline, as in Prometheus: its fields sit beside
	// url in the YAML.
	HTTPClientConfig config.HTTPClientConfig `yaml:",inline"`
	QueueConfig      QueueConfig             `yaml:"queue_config,omitempty"`
}

// QueueConfig holds the queue settings of Prometheus' queue_config that
// apply to a queue whose buffer is the event log itself. Prometheus'
// capacity, min_shards, batch_send_deadline and sample_age_limit size or
// age an in-memory buffer this queue does not have, and are refused by
// name rather than silently ignored.
type QueueConfig struct {
	// MaxSamplesPerSend is the most samples in one request.
	MaxSamplesPerSend int `yaml:"max_samples_per_send,omitempty"`
	// MaxShards is the most requests in flight at once.
	MaxShards int `yaml:"max_shards,omitempty"`
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// request the receiver could not take for now (5xx, network errors).
	MinBackoff model.Duration `yaml:"min_backoff,omitempty"`
	MaxBackoff model.Duration `yaml:"max_backoff,omitempty"`
	// RetryOnRateLimit retries on 429 too; otherwise a 429 drops the
	// request, as Prometheus does.
	RetryOnRateLimit bool `yaml:"retry_on_http_429,omitempty"`
}

// Defaults, chosen for raw samples that arrive in bulk: Prometheus'
// backoffs, few shards, since the queue shares the sidecar's cores, and
// large requests. A request carries each of its series' labels once, and
// a busy sidecar has thousands of series (every slot is one), each with a
// sample every few milliseconds: at 10,000 samples about half a request's
// bytes were labels, at 50,000 a quarter, and those are bytes not
// compressed, encoded and sent (~3% of the sidecar's CPU under load).
var (
	DefaultQueueConfig = QueueConfig{
		MaxSamplesPerSend: 50_000,
		MaxShards:         2,
		MinBackoff:        model.Duration(30 * time.Millisecond),
		MaxBackoff:        model.Duration(5 * time.Second),
	}
	DefaultRemoteTimeout = model.Duration(30 * time.Second)
)

// unsupportedQueueFields are Prometheus queue_config fields this queue has
// no use for, with the reason given when a file sets one.
var unsupportedQueueFields = map[string]string{
	"capacity":            "the queue's buffer is the event log, on disk",
	"min_shards":          "shards start at max_shards",
	"batch_send_deadline": "samples are sent as soon as they are committed",
	"sample_age_limit":    "every raw sample is sent, however old",
}

// UnmarshalYAML sets the defaults and refuses the queue fields that do
// not apply, by name.
func (q *QueueConfig) UnmarshalYAML(unmarshal func(any) error) error {
	var fields map[string]any
	if err := unmarshal(&fields); err != nil {
		return err
	}
	for name := range fields {
		if why, ok := unsupportedQueueFields[name]; ok {
			return fmt.Errorf("queue_config.%s is not used: %s", name, why)
		}
	}
	*q = DefaultQueueConfig
	type plain QueueConfig
	return unmarshal((*plain)(q))
}

// UnmarshalYAML sets the defaults and checks an endpoint.
func (e *Endpoint) UnmarshalYAML(unmarshal func(any) error) error {
	*e = Endpoint{RemoteTimeout: DefaultRemoteTimeout, QueueConfig: DefaultQueueConfig, HTTPClientConfig: config.DefaultHTTPClientConfig}
	type plain Endpoint
	if err := unmarshal((*plain)(e)); err != nil {
		return err
	}
	if e.URL == nil || e.URL.URL == nil || e.URL.Host == "" {
		return errors.New("url is missing")
	}
	if e.URL.Scheme != "http" && e.URL.Scheme != "https" {
		return fmt.Errorf("url %s: scheme must be http or https", e.URL.Redacted())
	}
	for name := range e.Headers {
		if forbiddenHeader(name) {
			return fmt.Errorf("header %q is set by the remote-write protocol itself", name)
		}
	}
	q := e.QueueConfig
	switch {
	case q.MaxSamplesPerSend <= 0:
		return errors.New("queue_config.max_samples_per_send must be positive")
	case q.MaxShards <= 0:
		return errors.New("queue_config.max_shards must be positive")
	case q.MinBackoff <= 0 || q.MaxBackoff < q.MinBackoff:
		return errors.New("queue_config: 0 < min_backoff <= max_backoff")
	case e.RemoteTimeout <= 0:
		return errors.New("remote_timeout must be positive")
	}
	return e.HTTPClientConfig.Validate()
}

// forbiddenHeader tells whether a header belongs to the protocol.
func forbiddenHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Content-Encoding", "Content-Length", "Content-Type", "User-Agent",
		"X-Prometheus-Remote-Write-Version", "Connection", "Keep-Alive", "Transfer-Encoding":
		return true
	}
	return false
}

// Parse reads a configuration; relative file paths in it (certificates,
// password and token files) are taken from dir.
func Parse(b []byte, dir string) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, err
	}
	if len(c.RemoteWrite) == 0 {
		return nil, errors.New("no remote_write endpoint")
	}
	seen := map[string]bool{}
	for i, e := range c.RemoteWrite {
		if e == nil {
			return nil, fmt.Errorf("remote_write[%d] is empty", i)
		}
		if key := e.URL.String(); seen[key] {
			return nil, fmt.Errorf("remote_write[%d]: url %s is listed twice", i, e.URL.Redacted())
		} else {
			seen[key] = true
		}
		e.HTTPClientConfig.SetDirectory(dir)
	}
	return &c, nil
}

// LoadFile reads the configuration at path.
func LoadFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseExternalLabel reads one --remote-write.external-label, NAME=VALUE.
func ParseExternalLabel(s string) (name, value string, _ error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("external label %q: want NAME=VALUE", s)
	}
	if !model.LegacyValidation.IsValidLabelName(name) || strings.HasPrefix(name, "__") {
		return "", "", fmt.Errorf("external label %q: %q is not a label name", s, name)
	}
	if value == "" {
		return "", "", fmt.Errorf("external label %q: the value is empty", s)
	}
	return name, value, nil
}
