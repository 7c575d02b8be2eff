package remotewrite

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any configuration file is refused with an error or gives
// endpoints that passed every check; nothing panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte("remote_write:\n- url: http://r:9090/api/v1/write\n"))
	f.Add([]byte("remote_write:\n- url: https://m/api/v1/push\n  headers: {X-Scope-OrgID: a}\n  basic_auth: {username: u, password: p}\n  queue_config: {max_shards: 3, capacity: 1}\n"))
	f.Add([]byte("remote_write: [{url: 'http://x'}, {url: 'http://x'}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b, t.TempDir())
		if err != nil {
			return
		}
		for _, e := range c.RemoteWrite {
			if e.URL == nil || e.QueueConfig.MaxShards <= 0 || e.QueueConfig.MaxSamplesPerSend <= 0 {
				t.Fatalf("accepted an endpoint that fails the checks: %+v", e)
			}
		}
	})
}

// FuzzPositions: a positions file of any content is read or replaced by
// empty positions (everything sent again), never with a negative mark.
func FuzzPositions(f *testing.F) {
	f.Add([]byte(`{"url":"http://r/w","experiments":{"a":{"Segment":1,"Offset":120,"Samples":5,"done":true,"events":3}}}`))
	f.Add([]byte(`{"experiments":{"a":{"Segment":-1}}}`))
	f.Add([]byte(`{garbage`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, positionsFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := openPositions(dir, "http://r/w", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if !p.valid() {
			t.Fatalf("kept invalid positions from %q", b)
		}
	})
}
