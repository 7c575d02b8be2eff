package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
)

// TestIngestBackpressure: beyond the requests or body bytes in flight,
// ingest answers 429 with Retry-After and stores nothing; once they are
// free it takes the same request.
func TestIngestBackpressure(t *testing.T) {
	f := newFixtureWith(t, true, Options{MaxInflightRequests: 2, MaxInflightBytes: maxBody})
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))

	t.Run("requests", func(t *testing.T) {
		f.api.slots <- struct{}{}
		f.api.slots <- struct{}{}
		r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev))
		if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || r.env.ErrorType != "unavailable" ||
			!strings.Contains(r.env.Error, "--ingest.max-inflight-requests") {
			t.Fatalf("with every slot taken: %d %q %q %s", r.code, r.header.Get("Retry-After"), r.env.ErrorType, r.env.Error)
		}
		if got := f.stored(t, "e"); got != 0 {
			t.Fatalf("a refused request stored %d events", got)
		}
		<-f.api.slots
		if r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev)); r.code != 200 {
			t.Fatalf("with a slot free: %d %s", r.code, r.env.Error)
		}
		<-f.api.slots
	})

	t.Run("bytes", func(t *testing.T) {
		// A client that announced most of the budget and sends slowly.
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/experiments/e/events", pr)
		req.ContentLength = maxBody - 100
		slow := make(chan int, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				slow <- 0
				return
			}
			resp.Body.Close()
			slow <- resp.StatusCode
		}()
		pw.Write([]byte("["))
		deadline := time.Now().Add(5 * time.Second)
		for f.api.bodies.inUse() < maxBody-100 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		before := f.stored(t, "e")
		r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev))
		if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.env.Error, "--ingest.max-inflight-bytes") {
			t.Fatalf("with the byte budget held: %d %q %s", r.code, r.header.Get("Retry-After"), r.env.Error)
		}
		pw.CloseWithError(errors.New("client gave up"))
		<-slow
		for f.api.bodies.inUse() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev)); r.code != 200 {
			t.Fatalf("after the slow body went: %d %s", r.code, r.env.Error)
		}
		if got := f.stored(t, "e"); got != before+1 {
			t.Fatalf("stored %d, want %d", got, before+1)
		}
	})

	t.Run("not ready", func(t *testing.T) {
		g := newFixtureWith(t, false, Options{MaxInflightRequests: 2, MaxInflightBytes: maxBody})
		r := g.do(t, "POST", "/api/v1/events", []byte(ev))
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("before storage is open: %d %q", r.code, r.header.Get("Retry-After"))
		}
	})
}

// serve starts the API on a real listener with the server NewServer builds.
func serve(t *testing.T, f *fixture, o ServerOptions, maxConns int) string {
	t.Helper()
	mux := http.NewServeMux()
	f.api.Register(mux)
	addrs := []string{"127.0.0.1:0"}
	ls, err := Listen(&web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: new(bool), WebConfigFile: new(string)}, maxConns)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(mux, o)
	go srv.Serve(ls[0])
	t.Cleanup(func() { srv.Close() })
	return ls[0].Addr().String()
}

// readStatus reads an HTTP status line from c, or fails after d.
func readStatus(c net.Conn, d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestSlowBodyIsCutOff: a client sending its body a byte at a time is cut
// off at the read timeout and stores nothing; a large body sent at an
// ordinary pace is taken whole.
func TestSlowBodyIsCutOff(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))
	addr := serve(t, f, ServerOptions{ReadTimeout: 500 * time.Millisecond}, 0)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/experiments/e/events HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(ev))
	start := time.Now()
	go func() {
		for i := range len(ev) {
			if _, err := c.Write([]byte{ev[i]}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	status, err := readStatus(c, 5*time.Second)
	if took := time.Since(start); took > 3*time.Second || (err == nil && !strings.Contains(status, "408")) {
		t.Fatalf("slow body: %q %v after %s, want 408 or a closed connection within about the read timeout", status, err, took)
	}
	if got := f.stored(t, "e"); got != 0 {
		t.Fatalf("a body cut off stored %d events", got)
	}

	big := bytes.Repeat([]byte(ev+"\n"), maxBody/(len(ev)+1))
	resp, err := http.Post("http://"+addr+"/api/v1/experiments/e/events", "application/x-ndjson", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.stored(t, "e") != int64(bytes.Count(big, []byte("\n"))) {
		t.Fatalf("a large body at full speed: %d, stored %d", resp.StatusCode, f.stored(t, "e"))
	}
}

// TestIdleConnectionsAreClosed: a keep-alive connection without a next
// request is closed after the idle timeout.
func TestIdleConnectionsAreClosed(t *testing.T) {
	f := newFixture(t, true)
	addr := serve(t, f, ServerOptions{ReadTimeout: time.Minute, IdleTimeout: 300 * time.Millisecond}, 0)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %v %+v", err, resp)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF || time.Since(start) > 3*time.Second {
		t.Fatalf("idle connection: read %v after %s, want EOF after about 300ms", err, time.Since(start))
	}
}

// TestConnectionCap: past the cap a new connection is not served until
// one of those open closes.
func TestConnectionCap(t *testing.T) {
	f := newFixture(t, true)
	addr := serve(t, f, ServerOptions{ReadTimeout: time.Minute, IdleTimeout: time.Minute}, 2)
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
		if status, err := readStatus(c, 5*time.Second); err != nil || !strings.Contains(status, "200") {
			t.Fatalf("connection within the cap: %q %v", status, err)
		}
		open = append(open, c)
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	fmt.Fprint(third, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
	if status, err := readStatus(third, 300*time.Millisecond); err == nil {
		t.Fatalf("a connection beyond the cap was served: %q", status)
	}
	open[0].Close()
	if status, err := readStatus(third, 5*time.Second); err != nil || !strings.Contains(status, "200") {
		t.Fatalf("once a connection closed: %q %v", status, err)
	}
}

// TestNewServerTimeouts: the header timeout never exceeds the read timeout.
func TestNewServerTimeouts(t *testing.T) {
	for _, c := range []struct{ read, header time.Duration }{
		{0, maxHeaderTime}, {time.Second, time.Second}, {5 * time.Minute, maxHeaderTime},
	} {
		t.Run("read="+c.read.String(), func(t *testing.T) {
			srv := NewServer(http.NotFoundHandler(), ServerOptions{ReadTimeout: c.read})
			if srv.ReadHeaderTimeout != c.header || srv.ReadTimeout != c.read || srv.WriteTimeout != 0 {
				t.Errorf("read %s: %+v", c.read, srv)
			}
		})
	}
}

// TestIngestQueueTimeout: a request finding no room waits for it up to
// the queue timeout, then gets 429.
func TestIngestQueueTimeout(t *testing.T) {
	f := newFixtureWith(t, true, Options{MaxInflightRequests: 1, MaxInflightBytes: maxBody, QueueTimeout: 300 * time.Millisecond})
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"e","name":"E"}`))
	f.api.slots <- struct{}{}
	go func() { time.Sleep(100 * time.Millisecond); <-f.api.slots }()
	if r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev)); r.code != 200 {
		t.Fatalf("a slot freed within the queue timeout: %d %s", r.code, r.env.Error)
	}
	f.api.slots <- struct{}{}
	defer func() { <-f.api.slots }()
	start := time.Now()
	r := f.do(t, "POST", "/api/v1/experiments/e/events", []byte(ev))
	if took := time.Since(start); r.code != 429 || took < 250*time.Millisecond || took > 3*time.Second {
		t.Fatalf("no slot within the queue timeout: %d after %s", r.code, took)
	}
	if got := f.stored(t, "e"); got != 1 {
		t.Fatalf("stored %d, want 1", got)
	}
}
