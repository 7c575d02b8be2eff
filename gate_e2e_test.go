package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// runExit runs the built binary and returns its output and exit code. The
// race runtime's second of sleep before a successful exit is left out: the
// command has done its work by then.
func runExit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

// output runs the built binary, which must succeed, and returns its output.
func output(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runExit(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// TestGateAndPairsEndToEnd: two evaluation runs sent to the built sidecar
// (under a route prefix) are gated through its URL and, once it has
// stopped, from its data directory, with the same verdicts; exit 0 when
// nothing regresses, 1 on a regression, 2 on missing data or bad usage.
// compare --pairs and the paired block of compare print what the API
// answers.
func TestGateAndPairsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar: slow; runs without -short")
	}
	dir := t.TempDir()
	s := startSidecar(t, dir, "--web.route-prefix=/crucible")
	for arm, id := range []string{"base", "cand"} {
		if code, body := s.post("/api/v1/experiments", `{"id":"`+id+`","name":"`+id+`"}`); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, code, body)
		}
		if code, body := s.post("/api/v1/experiments/"+id+"/events", evalRun(arm)); code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"accepted":%d`, 41+1-arm)) {
			t.Fatalf("ingest %s: %d %s", id, code, body)
		}
	}
	apiData := func(path string) string {
		t.Helper()
		var raw json.RawMessage
		s.get(path, &raw)
		return canonical(t, raw)
	}
	wantPairs := apiData("/api/v1/compare/pairs?experiments=base,cand&metric=success")
	var cmp struct {
		Comparison map[string]struct {
			Paired json.RawMessage `json:"paired"`
		} `json:"comparison"`
	}
	s.get("/api/v1/compare?experiments=base,cand", &cmp)
	wantPaired := canonical(t, cmp.Comparison["cand"].Paired)
	if !strings.Contains(wantPaired, `"n_pairs":40`) || !strings.Contains(wantPairs, `"sample_id":"q-`) {
		t.Fatalf("the sidecar paired nothing: %s\n%s", wantPaired, wantPairs)
	}

	pass := []string{"--max-regression=latency_mean:5%", "--max-regression=success_rate:0.05"}
	regress := []string{"--max-regression=latency_p95:10%", "--max-regression=score:exact_match:0.02", "--max-regression=cost_mean:50%"}
	missing := []string{"--max-regression=latency_mean:5%", "--max-regression=score:no_such_score:0.1"}
	type verdicts struct {
		Passed bool `json:"passed"`
		Checks []struct {
			Metric  string          `json:"metric"`
			Margin  json.RawMessage `json:"margin"`
			Diff    *float64        `json:"diff"`
			CI95    [2]*float64     `json:"ci95"`
			Method  string          `json:"method"`
			Verdict string          `json:"verdict"`
		} `json:"checks"`
	}
	gate := func(t *testing.T, where string, checks []string, wantCode int, extra ...string) (string, string) {
		t.Helper()
		args := append(append([]string{"gate", where, "base", "cand"}, checks...), extra...)
		out, errOut, code := runExit(t, args...)
		if code != wantCode {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	byURL := map[string]string{} // the JSON verdicts through the URL, by case
	cases := []struct {
		name   string
		checks []string
		code   int
	}{{"pass", pass, 0}, {"regress", regress, 1}, {"missing", missing, 2}}
	for _, c := range cases {
		t.Run("url/"+c.name, func(t *testing.T) {
			out, errOut := gate(t, "--url="+s.url, c.checks, c.code, "--format=json")
			var v verdicts
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if v.Passed != (c.code == 0) || len(v.Checks) != len(c.checks) {
				t.Errorf("verdicts %s", out)
			}
			for i, ch := range v.Checks {
				if ch.Metric == "" || ch.Method == "" || ch.Verdict == "" || len(ch.Margin) == 0 {
					t.Errorf("check %d: %+v", i, ch)
				}
			}
			switch c.name {
			case "regress":
				if v.Checks[1].CI95[1] == nil || !(*v.Checks[1].CI95[1] < -0.02) {
					t.Errorf("exact_match regressed beyond its margin, yet its interval is %v", v.Checks[1].CI95)
				}
			case "missing":
				if v.Checks[1].CI95[0] != nil || !strings.Contains(errOut, "no_such_score") {
					t.Errorf("missing score: interval %v, stderr %q", v.Checks[1].CI95, errOut)
				}
			}
			byURL[c.name] = canonical(t, []byte(out))
			table, _ := gate(t, "--url="+s.url, c.checks, c.code)
			for _, ch := range c.checks {
				if m := strings.TrimPrefix(ch, "--max-regression="); !strings.Contains(table, m[:strings.LastIndex(m, ":")]) {
					t.Errorf("the table does not name %s:\n%s", m, table)
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown experiment", []string{"gate", "--url=" + s.url, "base", "nope", pass[0]}, "nope"},
		{"no route prefix", []string{"gate", "--url=" + s.root, "base", "cand", pass[0]}, "--web.route-prefix"},
		{"unreachable", []string{"gate", "--url=http://" + freePort(t), "base", "cand", pass[0]}, "cannot reach the sidecar"},
		{"both sources", []string{"gate", "--url=" + s.url, "--storage.path=" + dir, "base", "cand", pass[0]}, "exactly one of --storage.path"},
		{"no source", []string{"gate", "base", "cand", pass[0]}, "exactly one of --storage.path"},
		{"no check", []string{"gate", "--url=" + s.url, "base", "cand"}, "--max-regression"},
		{"bad check", []string{"gate", "--url=" + s.url, "base", "cand", "--max-regression=latency_mean"}, "latency_mean"},
		{"one experiment", []string{"gate", "--url=" + s.url, "base", pass[0]}, "candidate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runExit(t, c.args...)
			if code != 2 || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, want 2 with %q on stderr\n%s%s", c.args, code, c.want, out, errOut)
			}
		})
	}
	if code := s.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("sidecar exit %d\n%s", code, s.logs)
	}

	for _, c := range cases {
		t.Run("storage/"+c.name, func(t *testing.T) {
			out, _ := gate(t, "--storage.path="+dir, c.checks, c.code, "--format=json")
			if got := canonical(t, []byte(out)); got != byURL[c.name] {
				t.Errorf("offline verdicts differ from the sidecar's:\n%s\n%s", got, byURL[c.name])
			}
		})
	}
	t.Run("storage/unknown experiment", func(t *testing.T) {
		if _, errOut, code := runExit(t, "gate", "--storage.path="+dir, "base", "nope", pass[0]); code != 2 || !strings.Contains(errOut, "nope") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("compare --pairs", func(t *testing.T) {
		if got := canonical(t, []byte(output(t, "compare", "--storage.path="+dir, "--pairs=success", "--format=json", "base", "cand"))); got != wantPairs {
			t.Errorf("compare --pairs=success --format=json differs from /api/v1/compare/pairs:\n%s\n%s", got, wantPairs)
		}
		table := output(t, "compare", "--storage.path="+dir, "--pairs=success", "--limit=3", "base", "cand")
		if !strings.Contains(table, "q-") {
			t.Errorf("compare --pairs table names no sample:\n%s", table)
		}
		if _, errOut, code := runExit(t, "compare", "--storage.path="+dir, "--pairs=tokens", "base", "cand"); code != 2 || !strings.Contains(errOut, "tokens") {
			t.Errorf("--pairs=tokens: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("compare paired", func(t *testing.T) {
		var report struct {
			Comparison map[string]struct {
				Paired json.RawMessage `json:"paired"`
			} `json:"comparison"`
		}
		if err := json.Unmarshal([]byte(output(t, "compare", "--storage.path="+dir, "--format=json", "base", "cand")), &report); err != nil {
			t.Fatal(err)
		}
		if got := canonical(t, report.Comparison["cand"].Paired); got != wantPaired {
			t.Errorf("compare --format=json paired block differs from /api/v1/compare:\n%s\n%s", got, wantPaired)
		}
	})
}
