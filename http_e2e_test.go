package main

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHelpListsServeFlags: serve is the default command, so the top-level
// help shows its flags, not only those of every command.
func TestHelpListsServeFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, flag := range []string{"--storage.path", "--web.listen-address", "--web.read-timeout", "--ingest.max-inflight-requests"} {
			if !strings.Contains(string(out), flag) {
				t.Errorf("%v does not list %s:\n%s", args, flag, out)
			}
		}
	}
}

// TestServeFlagsBoundRequests: the built sidecar cuts off a body that
// trickles in past --web.read-timeout, and refuses to start when the
// in-flight budget could never hold the largest body.
func TestServeFlagsBoundRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	s := startSidecar(t, t.TempDir(), "--web.read-timeout=1s")
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if took := time.Since(start); took > 5*time.Second || (err == nil && !strings.Contains(string(buf[:n]), "408")) {
		t.Fatalf("a trickling body: %q %v after %s", buf[:n], err, took)
	}

	out, err := exec.Command(binary, "--storage.path="+t.TempDir(), "--web.listen-address=127.0.0.1:0",
		"--web.max-request-bytes=32MiB", "--ingest.max-inflight-bytes=16MiB").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "--ingest.max-inflight-bytes") {
		t.Fatalf("in-flight bytes below the body limit: exit %d\n%s", code, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
