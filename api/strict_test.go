package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/snappy"
)

// TestUnknownQueryParameters: a parameter a route does not take is a 400
// naming it (with the nearest it takes), never silently ignored.
func TestUnknownQueryParameters(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"q","name":"Q"}`))
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"r","name":"R"}`))
	f.do(t, "POST", "/api/v1/experiments/q/events", []byte(`[{"event_name":"a","success":true},{"event_name":"a","success":false}]`))
	cases := []struct {
		method, path string
		code         int
		want         string // in the error
	}{
		{"GET", "/api/v1/experiments/q/events?sucess=false", 400, `"sucess" (did you mean "success"?)`},
		{"GET", "/api/v1/experiments/q/events?success=false&success=true", 400, "given 2 times"},
		{"GET", "/api/v1/experiments/q/events?success=false", 200, ""},
		{"GET", "/api/v1/experiments/q/events?limit=1&lmit=2&zzz=1", 400, `"lmit" (did you mean "limit"?), "zzz"`},
		{"GET", "/api/v1/experiments/q/events?%zz", 400, "malformed"},
		{"GET", "/api/v1/experiments/q/metrics?latncy=1", 400, `"latncy"`},
		{"GET", "/api/v1/experiments/q/metrics?limit=1", 400, `"limit"`},
		{"GET", "/api/v1/experiments/q/windows?szie=1m", 400, `did you mean "size"`},
		{"GET", "/api/v1/experiments/q/export?formt=csv", 400, `did you mean "format"`},
		{"GET", "/api/v1/compare?experiments=q,r&seeed=1", 400, `did you mean "seed"`},
		{"GET", "/api/v1/experiments?stats=running", 400, `did you mean "status"`},
		{"GET", "/api/v1/experiments/q?verbose=1", 400, "takes none"},
		{"POST", "/api/v1/events?experiment_id=q", 400, `"experiment_id"`},
		{"POST", "/api/v1/experiments/q/pause?now=1", 400, `"now"`},
		{"GET", "/api/v1/pricing?model=gpt-4", 400, `"model"`},
		{"GET", "/-/ready?probe=kubelet", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			var body []byte
			if c.method == "POST" && strings.Contains(c.path, "events") {
				body = []byte(ev)
			}
			r := f.do(t, c.method, c.path, body)
			if r.code != c.code || !strings.Contains(r.env.Error, c.want) || (c.code == 400 && r.env.ErrorType != "bad_data") {
				t.Fatalf("got %d %q %s, want %d with %q", r.code, r.env.ErrorType, r.env.Error, c.code, c.want)
			}
		})
	}
	if got := f.stored(t, "q"); got != 2 {
		t.Fatalf("refused requests stored events: %d, want 2", got)
	}
	if rec := f.do(t, "GET", "/api/v1/experiments/q", nil); strings.Contains(string(rec.env.Data), `"paused"`) {
		t.Fatalf("a refused pause paused: %s", rec.env.Data)
	}
}

// TestMethodsAndRoutes: /-/reload takes POST and PUT; another method on a
// known path is a 405 with Allow; an unknown API path a 404 envelope.
func TestMethodsAndRoutes(t *testing.T) {
	f := newFixture(t, true)
	for _, m := range []string{"POST", "PUT"} {
		t.Run(m, func(t *testing.T) {
			if r := f.do(t, m, "/-/reload", nil); r.code != 200 {
				t.Errorf("%s /-/reload: %d", m, r.code)
			}
		})
	}
	if f.reloads != 2 {
		t.Errorf("reloads %d, want 2", f.reloads)
	}
	cases := []struct {
		method, path, allow string
		code                int
	}{
		{"GET", "/-/reload", "POST, PUT", 405},
		{"DELETE", "/-/reload", "POST, PUT", 405},
		{"POST", "/-/healthy", "GET, HEAD", 405},
		{"GET", "/api/v1/experiments/x/pause", "POST", 405},
		{"PUT", "/api/v1/experiments/x", "GET, HEAD, DELETE", 405},
		{"GET", "/api/v1/events", "POST", 405},
		{"GET", "/api/v1/experimnts", "", 404},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := f.do(t, c.method, c.path, nil)
			if r.code != c.code || r.header.Get("Allow") != c.allow || r.env.Status != "error" || r.env.Error == "" {
				t.Errorf("%s %s: %d Allow %q %+v, want %d Allow %q", c.method, c.path, r.code, r.header.Get("Allow"), r.env, c.code, c.allow)
			}
		})
	}
	if f.reloads != 2 {
		t.Errorf("a refused method reloaded: %d", f.reloads)
	}
}

// TestErrorTypes: a 403 says forbidden; a full disk is a 507 naming the
// path, with Retry-After.
func TestErrorTypes(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"d","name":"D"}`))
	r := f.do(t, "DELETE", "/api/v1/experiments/d", nil)
	if r.code != 403 || r.env.ErrorType != "forbidden" {
		t.Errorf("DELETE without the admin API: %d %q", r.code, r.env.ErrorType)
	}

	full := fmt.Errorf("experiment d: append: %w", &fs.PathError{Op: "write", Path: "/data/experiments/d/events/00000001", Err: syscall.ENOSPC})
	quota := fmt.Errorf("sync: %w", syscall.EDQUOT)
	for _, c := range []struct {
		name        string
		err         error
		code        int
		typ, retry  string
		wantInError string
	}{
		{"disk full", full, 507, "unavailable", "30", "storage full at /data/experiments/d/events/00000001"},
		{"quota", quota, 507, "unavailable", "30", "storage full"},
		{"permission", fmt.Errorf("open: %w", &fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}), 500, "internal", "", "permission denied"},
		{"busy", fmt.Errorf("%w: busy", errBusy), 429, "unavailable", "1", "busy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			f.api.fail(rec, httptest.NewRequest("POST", "/api/v1/events", nil), c.err)
			var env envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatal(err)
			}
			if rec.Code != c.code || env.ErrorType != c.typ || rec.Header().Get("Retry-After") != c.retry || !strings.Contains(env.Error, c.wantInError) {
				t.Errorf("%v: %d %q Retry-After %q %q", c.err, rec.Code, env.ErrorType, rec.Header().Get("Retry-After"), env.Error)
			}
		})
	}
}

// TestGarbageCompressedBodies: bytes that are not what Content-Encoding
// says are a 400, whatever sizes they seem to declare; a real oversized
// body stays a 413.
func TestGarbageCompressedBodies(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"g","name":"G"}`))
	rng := rand.New(rand.NewPCG(1, 2))
	zstdMagic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	for _, enc := range []string{"zstd", "snappy", "gzip"} {
		t.Run(enc, func(t *testing.T) {
			for i := range 300 {
				b := make([]byte, 1+rng.IntN(300))
				for j := range b {
					b[j] = byte(rng.Uint32())
				}
				if enc == "zstd" && i%2 == 0 {
					copy(b, zstdMagic) // past the magic number, into the frame header
				}
				r := f.do(t, "POST", "/api/v1/experiments/g/events", b, "Content-Encoding", enc)
				if r.code != 400 || r.env.ErrorType != "bad_data" {
					t.Fatalf("garbage %x: %d %q %s", b, r.code, r.env.ErrorType, r.env.Error)
				}
			}
		})
	}
	if got := f.stored(t, "g"); got != 0 {
		t.Fatalf("garbage stored %d events", got)
	}
	big := []byte(strings.Repeat(" ", 2*maxBody))
	for _, c := range []struct {
		enc  string
		body []byte
	}{{"zstd", zst(big)}, {"snappy", snappy.Encode(nil, big)}, {"gzip", gz(big)}} {
		t.Run("oversized "+c.enc, func(t *testing.T) {
			if r := f.do(t, "POST", "/api/v1/experiments/g/events", c.body, "Content-Encoding", c.enc); r.code != 413 {
				t.Errorf("%s of %d bytes: %d %s, want 413", c.enc, len(big), r.code, r.env.Error)
			}
		})
	}
}

// TestCreateWithEmptyID: "id":"" is a mistake, not a request for a
// generated id.
func TestCreateWithEmptyID(t *testing.T) {
	f := newFixture(t, true)
	if r := f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"","name":"x"}`)); r.code != 400 || !strings.Contains(r.env.Error, "id") {
		t.Fatalf(`"id":"": %d %s`, r.code, r.env.Error)
	}
	r := f.do(t, "GET", "/api/v1/experiments", nil)
	if string(r.env.Data) != "[]" {
		t.Fatalf("a refused create created: %s", r.env.Data)
	}
	if r := f.do(t, "POST", "/api/v1/experiments", []byte(`{"name":"x"}`)); r.code != 201 {
		t.Fatalf("omitted id: %d %s", r.code, r.env.Error)
	}
}

// TestWriteJSONEncodeError: a value that cannot be encoded is answered
// with a 500 naming the error in a valid envelope, not a 200 without body.
func TestWriteJSONEncodeError(t *testing.T) {
	rec := httptest.NewRecorder()
	writeJSON(rec, slog.New(slog.DiscardHandler), 200, envelope{Status: "success", Data: []float64{1, math.NaN()}})
	var env envelope
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != 500 || env.ErrorType != "internal" || !strings.Contains(env.Error, "NaN") {
		t.Fatalf("got %d %q (%v)", rec.Code, rec.Body.String(), err)
	}
}

// TestStreamedFailure: a streamed body that fails before its first byte is
// a 500 with the error; one that fails part way aborts the connection, so
// the client cannot take the cut body for a whole one.
func TestStreamedFailure(t *testing.T) {
	f := newFixture(t, true)
	boom := errors.New("log unreadable")
	h := http.NewServeMux()
	h.HandleFunc("/early", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("Content-Disposition", `attachment; filename="x.csv"`)
		f.api.streamed(w, r, func(io.Writer) (int64, error) { return 0, boom })
	})
	h.HandleFunc("/late", func(w http.ResponseWriter, r *http.Request) {
		f.api.streamed(w, r, func(w io.Writer) (int64, error) {
			for range 100 {
				w.Write([]byte(strings.Repeat("x", 1000) + "\n"))
			}
			return 100, boom
		})
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/early")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("Content-Disposition") != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		!strings.Contains(string(b), boom.Error()) {
		t.Fatalf("early failure: %d %v %s", resp.StatusCode, resp.Header, b)
	}

	resp, err = http.Get(srv.URL + "/late")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("a body cut part way read as whole (status %d)", resp.StatusCode)
	}
}
