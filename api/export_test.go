package api

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedExperiment stores events with every kind of field, out of order.
func fixedExperiment(t *testing.T, f *fixture) {
	t.Helper()
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"gold","name":"Golden \"run\"","condition":"treatment","tags":["a","b"]}`))
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixMicro()
	if time.Now().UnixMicro()-base > int64(9*time.Minute/time.Microsecond) || base > time.Now().UnixMicro() {
		base = time.Now().Add(-time.Minute).Truncate(time.Second).UnixMicro()
	}
	lines := []string{
		fmt.Sprintf(`{"event_name":"req_llm.request.stop","event_id":"e3","timestamp":%d,"measurements":{"duration":150000000},"metadata":{"model":"gpt-4","provider":"openai","tokens":{"prompt":100,"completion":200},"session_id":"s-1","user_id":"u-1","sample_id":17,"response":"Hello, \"world\"\nsecond line"}}`, base+3000),
		fmt.Sprintf(`{"event_name":"req_llm.request.exception","event_id":"e2","timestamp":%d,"latency_ms":0.1,"metadata":{"model":"gpt-4","session_id":"s-2","error":{"type":"timeout","stack":[{"file":"a.go","line":1},{"file":"b.go","line":2}]},"retries":[1,2,3]}}`, base+1000),
		fmt.Sprintf(`{"event_name":"crucible_train.epoch.stop","event_id":"e1","timestamp":%d,"metadata":{"loss":0.25,"epoch":3},"measurements":{"accuracy":0.875}}`, base+1000),
		fmt.Sprintf(`{"event_name":"custom.step","event_id":"e4","timestamp":%d,"cost_usd":1e-7,"success":true,"scores":{"judge.helpfulness":0.8,"exact_match":true}}`, base+2000),
	}
	f.do(t, "POST", "/api/v1/experiments/gold/events", []byte(strings.Join(lines, "\n")), "Content-Type", "application/x-ndjson")
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the golden file:\n%s", name, got)
	}
}

// stableTimes replaces the run's timestamps, which depend on the clock.
func stableTimes(b []byte, base int64) []byte {
	s := string(b)
	for i := int64(0); i <= 3000; i += 1000 {
		ts := base + i
		s = strings.ReplaceAll(s, fmt.Sprint(ts), fmt.Sprintf("<T+%d>", i))
		s = strings.ReplaceAll(s, time.UnixMicro(ts).UTC().Format("2006-01-02T15:04:05.000000Z07:00"), fmt.Sprintf("<DT+%d>", i))
	}
	return []byte(s)
}

func exportBody(t *testing.T, f *fixture, query string) ([]byte, string, string) {
	t.Helper()
	resp, err := f.srv.Client().Get(f.srv.URL + "/api/v1/experiments/gold/export?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("export %s: %d %s", query, resp.StatusCode, b.String())
	}
	return b.Bytes(), resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")
}

func TestExportGolden(t *testing.T) {
	f := newFixture(t, true)
	fixedExperiment(t, f)
	var first struct {
		Timestamp int64 `json:"timestamp"`
	}
	jl, ctype, disp := exportBody(t, f, "format=jsonl")
	json.Unmarshal(bytes.SplitN(jl, []byte("\n"), 2)[0], &first)
	base := first.Timestamp - 1000
	if ctype != "application/x-ndjson" || !strings.HasPrefix(disp, `attachment; filename="gold-`) {
		t.Fatalf("headers %q %q", ctype, disp)
	}
	lines := bytes.Split(bytes.TrimSpace(jl), []byte("\n"))
	var ids []string
	for _, l := range lines {
		var e struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("a JSONL line is not JSON: %v\n%s", err, l)
		}
		ids = append(ids, e.EventID)
	}
	if strings.Join(ids, ",") != "e1,e2,e4,e3" {
		t.Fatalf("order %v, want by (timestamp, event_id)", ids)
	}
	golden(t, "export.jsonl", stableTimes(jl, base))

	c, ctype, _ := exportBody(t, f, "format=csv")
	if ctype != "text/csv; charset=utf-8" {
		t.Fatalf("content type %q", ctype)
	}
	golden(t, "export.csv", stableTimes(c, base))
	rows, err := csv.NewReader(bytes.NewReader(c)).ReadAll()
	if err != nil || len(rows) != 5 {
		t.Fatalf("CSV: %v, %d rows", err, len(rows))
	}

	js, _, _ := exportBody(t, f, "format=json")
	var arr []map[string]any
	if err := json.Unmarshal(js, &arr); err != nil || len(arr) != 4 || !bytes.Contains(js, []byte("\n    \"event_id\"")) {
		t.Fatalf("format=json must be one pretty-printed array: %v", err)
	}

	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format, func(t *testing.T) {
			anon, _, _ := exportBody(t, f, "format="+format+"&anonymize=true")
			if bytes.Contains(anon, []byte("s-1")) || bytes.Contains(anon, []byte("u-1")) || bytes.Contains(anon, []byte("s-2")) {
				t.Fatalf("anonymized %s export leaks ids:\n%s", format, anon)
			}
			again, _, _ := exportBody(t, f, "format="+format+"&anonymize=true")
			if !bytes.Equal(anon, again) {
				t.Fatalf("anonymized ids must be stable (%s)", format)
			}
		})
	}
	// In a CSV the hashed ids sit where the ids were, in the base and the
	// metadata columns alike.
	anonCSV, _, _ := exportBody(t, f, "format=csv&anonymize=true")
	arows, err := csv.NewReader(bytes.NewReader(anonCSV)).ReadAll()
	if err != nil || len(arows) != len(rows) {
		t.Fatalf("anonymized CSV: %v, %d rows", err, len(arows))
	}
	for i := range rows[0] {
		for r := 1; r < len(rows); r++ {
			plain, hashed := rows[r][i], arows[r][i]
			switch col := rows[0][i]; col {
			case "user_id", "session_id", "metadata_user_id", "metadata_session_id":
				if plain != "" && (hashed == plain || len(hashed) != 32) {
					t.Errorf("row %d %s: %q became %q", r, col, plain, hashed)
				}
			default:
				if hashed != plain {
					t.Errorf("row %d %s: %q became %q; only ids change", r, col, plain, hashed)
				}
			}
		}
	}

	for _, q := range []string{"format=xml", "format=csv&flatten=maybe", "anonymize=perhaps"} {
		t.Run(q, func(t *testing.T) {
			if r := f.do(t, "GET", "/api/v1/experiments/gold/export?"+q, nil); r.code != 400 {
				t.Fatalf("%s: %d, want 400", q, r.code)
			}
		})
	}
	if r := f.do(t, "GET", "/api/v1/experiments/nope/export", nil); r.code != 404 {
		t.Fatalf("unknown experiment: %d", r.code)
	}
}

// TestCSVReadsBackInPython: Python's csv module reads the export, with
// every row as wide as the header.
func TestCSVReadsBackInPython(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is not installed (apt-get install -y python3)")
		}
		t.Skip("python3 is not installed; install it with: apt-get install -y python3")
	}
	f := newFixture(t, true)
	fixedExperiment(t, f)
	c, _, _ := exportBody(t, f, "format=csv")
	script := `import csv, sys
rows = list(csv.reader(sys.stdin))
assert len(rows) == 5, len(rows)
assert all(len(r) == len(rows[0]) for r in rows), "ragged"
h = rows[0]
assert h == sorted(h), "header not sorted"
byid = {r[h.index("event_id")]: r for r in rows[1:]}
assert byid["e3"][h.index("metadata_response")] == 'Hello, "world"\nsecond line'
assert float(byid["e4"][h.index("cost_usd")]) == 1e-7
assert byid["e2"][h.index("metadata_retries")] == "1,2,3"
print("ok")
`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = bytes.NewReader(c)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python csv: %v\n%s", err, out)
	}
}

// TestReimportReproducesAnalysis posts an export's lines into a new
// experiment: its analysis equals the original's.
func TestReimportReproducesAnalysis(t *testing.T) {
	f := newFixture(t, true)
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"orig","name":"Orig"}`))
	f.do(t, "POST", "/api/v1/experiments", []byte(`{"id":"copy","name":"Copy"}`))
	base := time.Now().Add(-time.Minute).UnixMicro()
	var lines []string
	for i := range 500 {
		lines = append(lines, fmt.Sprintf(`{"event_name":"req_llm.request.%s","timestamp":%d,"measurements":{"duration":%d},"metadata":{"model":%q,"tokens":{"prompt":%d,"completion":%d},"response":"x"}}`,
			[]string{"stop", "exception"}[i%9/8], base+int64(500-i)*997, 1e6*(i%50+1), []string{"gpt-4o", "unknown-llm"}[i%5/4], i, 2*i))
	}
	post := func(id string, lines []string) int {
		accepted := 0
		for i := 0; i < len(lines); i += 50 { // the fixture's body limit is small
			r := f.do(t, "POST", "/api/v1/experiments/"+id+"/events", []byte(strings.Join(lines[i:min(i+50, len(lines))], "\n")), "Content-Type", "application/x-ndjson")
			var res struct {
				Accepted int `json:"accepted"`
			}
			json.Unmarshal(r.env.Data, &res)
			accepted += res.Accepted
		}
		return accepted
	}
	if n := post("orig", lines); n != 500 {
		t.Fatalf("stored %d", n)
	}
	resp, _ := f.srv.Client().Get(f.srv.URL + "/api/v1/experiments/orig/export?format=jsonl")
	var jl bytes.Buffer
	jl.ReadFrom(resp.Body)
	resp.Body.Close()
	if n := post("copy", strings.Split(strings.TrimSpace(jl.String()), "\n")); n != 500 {
		t.Fatalf("re-import stored %d of 500", n)
	}
	a := f.do(t, "GET", "/api/v1/experiments/orig/metrics", nil)
	b := f.do(t, "GET", "/api/v1/experiments/copy/metrics", nil)
	if string(a.env.Data) != string(b.env.Data) {
		t.Fatalf("the copy's analysis differs:\n%s\n%s", a.env.Data, b.env.Data)
	}
}

func TestArchiveAndDelete(t *testing.T) {
	f := newFixture(t, true)
	fixedExperiment(t, f)
	r := f.do(t, "POST", "/api/v1/experiments/gold/archive", nil)
	var rec struct {
		Status       string `json:"status"`
		EventsStored int    `json:"events_stored"`
	}
	json.Unmarshal(r.env.Data, &rec)
	if r.code != 200 || rec.Status != "archived" || rec.EventsStored != 4 {
		t.Fatalf("archive: %d %s", r.code, r.env.Data)
	}
	// Still readable; takes no events.
	if r := f.do(t, "GET", "/api/v1/experiments/gold/metrics", nil); r.code != 200 {
		t.Fatalf("metrics of an archived experiment: %d", r.code)
	}
	if r := f.do(t, "POST", "/api/v1/experiments/gold/events", []byte(`{"event_name":"x"}`)); r.code != 409 {
		t.Fatalf("ingest into an archived experiment: %d", r.code)
	}
	names := archiveNames(t, filepath.Join(f.dir, "archives", "gold.tar.gz"))
	for _, want := range []string{"experiments/gold/experiment.json", "experiments/gold/events/00000001.seg", "/meta.json", "/index", "/chunks/000001"} {
		found := false
		for _, n := range names {
			if strings.HasSuffix(n, want) || n == want {
				found = true
			}
		}
		if !found {
			t.Errorf("archive lacks %s: %v", want, names)
		}
	}

	if r := f.do(t, "DELETE", "/api/v1/experiments/gold", nil); r.code != 403 {
		t.Fatalf("delete without --web.enable-admin-api: %d", r.code)
	}
	f.api.EnableAdminAPI = true
	if r := f.do(t, "DELETE", "/api/v1/experiments/gold", nil); r.code != 200 {
		t.Fatalf("delete: %d %s", r.code, r.env.Error)
	}
	if r := f.do(t, "GET", "/api/v1/experiments/gold", nil); r.code != 404 {
		t.Fatalf("after delete: %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "experiments", "gold")); !os.IsNotExist(err) {
		t.Fatalf("data left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "archives", "gold.tar.gz")); !os.IsNotExist(err) {
		t.Fatalf("archive left behind: %v", err)
	}
}

func archiveNames(t *testing.T, path string) []string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	gz, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	return names
}
