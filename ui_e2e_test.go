package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

const installChromium = "apt-get update && apt-get install -y chromium"

// browser is a headless Chromium tab that records every console error,
// uncaught exception and failed load of the pages it shows.
type browser struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	messages []string
}

func newBrowser(t *testing.T, path string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				b.mu.Lock()
				b.messages = append(b.messages, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v\nconsole: %v", err, b.console())
	}
}

func (b *browser) console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.messages...)
}

// clean fails the test when the console has errors since the last call.
func (b *browser) clean(page string) {
	b.t.Helper()
	b.mu.Lock()
	msgs := b.messages
	b.messages = nil
	b.mu.Unlock()
	for _, m := range msgs {
		b.t.Errorf("%s: console: %s", page, m)
	}
}

func evaluate[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(15*time.Second))(ctx, t)
		return err
	})
}

// eventually waits until expr holds across a navigation, which ends a
// poll under way.
func (b *browser) eventually(expr string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s does not hold: %v\nconsole: %v", expr, err, b.console())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *browser) screenshot(dir, name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) media(dark bool) {
	b.t.Helper()
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
}

// shown is a number a page shows, as the page tagged it: its source, the
// JSON pointer into that source, the exact value and the text.
type shown struct {
	Src, Path, Value, Text, Scale, Digits, Format string
}

const shownJS = `[...document.querySelectorAll("[data-src][data-path]")].map(e => ({
	Src: e.dataset.src, Path: e.dataset.path, Value: e.dataset.value ?? "", Text: e.textContent,
	Scale: e.dataset.scale ?? "", Digits: e.dataset.digits ?? "", Format: e.dataset.format ?? ""}))`

// checkShown compares every tagged number of the page with the API's
// answers: the exact value equals the API's, and the text is that value
// to the digits shown. It returns the pointers checked, by source.
func checkShown(t *testing.T, page string, items []shown, sources map[string]any) map[string]map[string]bool {
	t.Helper()
	seen := map[string]map[string]bool{}
	for _, it := range items {
		doc, ok := sources[it.Src]
		if !ok {
			t.Errorf("%s: %s%s: no source %q", page, it.Src, it.Path, it.Src)
			continue
		}
		api, ok := jsonPointer(doc, it.Path)
		if !ok {
			t.Errorf("%s: %s%s is not in the API's answer", page, it.Src, it.Path)
			continue
		}
		if seen[it.Src] == nil {
			seen[it.Src] = map[string]bool{}
		}
		seen[it.Src][it.Path] = true
		var got any
		if err := json.Unmarshal([]byte(it.Value), &got); err != nil {
			t.Errorf("%s: %s%s: data-value %q: %v", page, it.Src, it.Path, it.Value, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(api) {
			t.Errorf("%s: %s%s is %v on the page, %v in the API", page, it.Src, it.Path, got, api)
			continue
		}
		text := strings.TrimSpace(it.Text)
		switch v := api.(type) {
		case nil:
			if text != "—" {
				t.Errorf("%s: %s%s: null shown as %q", page, it.Src, it.Path, text)
			}
		case bool:
			if want := map[bool]string{true: "yes", false: "no"}[v]; text != want {
				t.Errorf("%s: %s%s: %v shown as %q", page, it.Src, it.Path, v, text)
			}
		case float64:
			if it.Format == "time" {
				if want := time.UnixMicro(int64(v)).UTC().Format("2006-01-02 15:04:05Z"); text != want {
					t.Errorf("%s: %s%s: %v shown as %q, want %q", page, it.Src, it.Path, v, text, want)
				}
				continue
			}
			scale, digits := 1.0, 4
			if it.Scale != "" {
				scale, _ = strconv.ParseFloat(it.Scale, 64)
			}
			if it.Digits != "" {
				digits, _ = strconv.Atoi(it.Digits)
			}
			num := regexp.MustCompile(`[^0-9eE.+-]`).ReplaceAllString(text, "")
			x, err := strconv.ParseFloat(num, 64)
			want := v * scale
			if err != nil || math.Abs(x-want) > 0.5*math.Pow(10, float64(1-digits))*math.Abs(want)+1e-300 {
				t.Errorf("%s: %s%s: %v shown as %q, not to %d digits", page, it.Src, it.Path, want, text, digits)
			}
		}
	}
	return seen
}

// jsonPointer resolves an RFC 6901 pointer.
func jsonPointer(v any, p string) (any, bool) {
	if p == "" {
		return v, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func (s *sidecar) data(path string) any {
	s.t.Helper()
	var v any
	s.get(path, &v)
	return v
}

func (s *sidecar) status(id string) string {
	s.t.Helper()
	var rec struct{ Status string }
	s.get("/api/v1/experiments/"+id, &rec)
	return rec.Status
}

// TestUIEndToEnd drives the built sidecar's pages in headless Chromium,
// under a route prefix, over the demo's data and a third arm: each page
// loads without a console error, the numbers the experiment and comparison
// pages show are the API's, the lifecycle buttons work from the keyboard
// and the mouse, and screenshots of each page are written.
func TestUIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built sidecar and Chromium: slow; runs without -short")
	}
	chromium := needTool(t, "chromium", installChromium)
	start := time.Now()
	shots := os.Getenv("CRUCIBLE_UI_SCREENSHOTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "crucible-ui-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	s := startSidecar(t, t.TempDir(), "--web.route-prefix=/crucible", "--web.enable-admin-api")
	runBinary(t, "demo", "--target="+s.url, "--rate=40", "--duration=4s", "--sample-size=1000")
	// A third arm answers some of the same samples: the comparison then has
	// two treatments, and Holm-adjusted p-values.
	if code, body := s.post("/api/v1/experiments", `{"id":"third","name":"Support bot: small model","condition":"third","tags":["demo","extra"]}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var nd strings.Builder
	for i := range 120 {
		fmt.Fprintf(&nd, `{"event_name":"req_llm.request.stop","latency_ms":%d,"cost_usd":%g,"success":%v,"scores":{"exact_match":%d,"judge.helpfulness":%g},"metadata":{"model":"small","provider":"local","sample_id":"q-%d"}}`+"\n",
			400+(i*53)%700, 0.0001*float64(1+i%4), i%12 != 0, (i/3)%2, 0.4+float64((i*7)%50)/100, i)
	}
	if code, body := s.post("/api/v1/experiments/third/events", nd.String()); code != 200 || !strings.Contains(body, `"accepted":120`) {
		t.Fatalf("ingest: %d %s", code, body)
	}

	b := newBrowser(t, chromium)
	root := s.url + "/"

	// The experiments.
	b.do(chromedp.Navigate(root), waitFor(`document.querySelectorAll("#experiments tbody tr").length === 3 && !!document.querySelector("[data-id=third] [data-field=last_event]")`))
	rows := evaluate[[]string](b, `[...document.querySelectorAll("#experiments tbody tr")].map(r => r.dataset.id)`)
	if strings.Join(rows, ",") != "third,demo-treatment,demo-control" {
		t.Errorf("experiments listed %v, want the newest first", rows)
	}
	list := map[string]any{}
	for _, id := range rows {
		list["experiment:"+id] = s.data("/api/v1/experiments/" + id)
	}
	checkShown(t, "experiments", evaluate[[]shown](b, shownJS), list)
	b.screenshot(shots, "experiments.png")
	// Filtered by tag, in the URL.
	b.do(chromedp.SendKeys(chromedp.CSS("#filter-tag"), "extra"), chromedp.Click(chromedp.CSS("#filters button[type=submit]")),
		waitFor(`document.querySelectorAll("#experiments tbody tr").length === 1 && location.search === "?tag=extra"`))
	b.clean("experiments")

	// An experiment: every number is the API's.
	b.do(chromedp.Navigate(root+"experiments/demo-control"), waitFor(`document.body.dataset.loaded >= 1`))
	items := evaluate[[]shown](b, shownJS)
	sources := map[string]any{
		"record":    s.data("/api/v1/experiments/demo-control"),
		"metrics":   s.data("/api/v1/experiments/demo-control/metrics"),
		"histogram": s.data("/ui/experiments/demo-control/latency-histogram"),
	}
	for _, e := range s.data("/api/v1/experiments/demo-control/events?last_n=15").([]any) {
		sources["event:"+e.(map[string]any)["event_id"].(string)] = e
	}
	seen := checkShown(t, "experiment", items, sources)
	for _, p := range []string{"/latency/p50", "/latency/p95", "/latency/p99", "/latency/mean", "/cost/total", "/reliability/success_rate",
		"/reliability/success_rate_ci95/0", "/tokens/total", "/scores/judge.helpfulness/mean", "/scores/judge.helpfulness/mean_ci95/1", "/scores/exact_match/count"} {
		if !seen["metrics"][p] {
			t.Errorf("the experiment page does not show metrics %s", p)
		}
	}
	events := 0
	for src := range seen {
		if strings.HasPrefix(src, "event:") {
			events++
		}
	}
	if events != 15 {
		t.Errorf("the experiment page shows %d of the latest 15 events", events)
	}
	if n := evaluate[int](b, `document.querySelectorAll("#chart-latency canvas, #chart-rate canvas, #chart-cost canvas, #chart-success canvas, #chart-lat-time canvas").length`); n < 5 {
		t.Errorf("%d charts drawn, want 5", n)
	}
	exports := evaluate[[]string](b, `["csv","jsonl","json"].map(f => document.getElementById("export-" + f).href)`)
	for _, u := range exports {
		resp, err := http.Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("export link %s: %v %v", u, err, resp)
		} else {
			resp.Body.Close()
		}
	}
	b.screenshot(shots, "experiment.png")
	// While it runs, the page follows new events without a reload.
	stored := sources["record"].(map[string]any)["events_stored"].(float64)
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`window.sameDocument = true`)(ctx, t)
		return err
	}))
	if code, body := s.post("/api/v1/experiments/demo-control/events", strings.Repeat(`{"event_name":"req_llm.request.stop","latency_ms":5,"success":true}`+"\n", 3)); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	b.do(waitFor(fmt.Sprintf(`window.sameDocument === true && document.querySelector('[data-src=record][data-path="/events_stored"]').dataset.value === "%d" && document.querySelector('[data-src=metrics][data-path="/latency/min"]').dataset.value === "5"`, int(stored)+3)))
	b.clean("experiment")

	// The comparison of three arms: classical, sequential and paired
	// intervals, Holm, the sample-ratio check and the per-sample differences.
	// Chosen on the page: the baseline, then the treatments, newest first
	// as listed.
	exps := "demo-control,third,demo-treatment"
	b.do(chromedp.Navigate(root+"compare"), waitFor(`document.querySelectorAll("#treatment-list input").length === 2`),
		chromedp.SetValue(chromedp.CSS("#baseline"), "demo-control"),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById("baseline").dispatchEvent(new Event("change"))`)(ctx, t)
			return err
		}),
		chromedp.Click(chromedp.CSS(`#treatment-list input[value=third]`)),
		chromedp.Click(chromedp.CSS(`#treatment-list input[value=demo-treatment]`)),
		chromedp.Click(chromedp.CSS(`#compare-go`)),
		waitFor(`document.body.dataset.loaded >= 1 && !!document.body.dataset.pairsLoaded && location.search === "?experiments=`+exps+`"`))
	checkCompare := func() map[string]map[string]bool {
		t.Helper()
		pl := strings.Split(evaluate[string](b, `document.body.dataset.pairsLoaded`), ",")
		sources := map[string]any{
			"compare": s.data("/api/v1/compare?experiments=" + exps),
			"pairs":   s.data(fmt.Sprintf("/api/v1/compare/pairs?experiments=%s,%s&metric=%s&limit=%s", pl[0], pl[1], url.QueryEscape(pl[2]), pl[3])),
		}
		return checkShown(t, "compare", evaluate[[]shown](b, shownJS), sources)
	}
	seen = checkCompare()
	for _, trt := range []string{"demo-treatment", "third"} {
		c := "/comparison/" + trt
		for _, p := range []string{
			"/latency/diff_mean", "/latency/diff_mean_ci95/0", "/latency/welch_p", "/latency/welch_p_holm", "/latency/sequential/cs95/1",
			"/latency/diff_p95_ci95/0", "/success_rate/diff_ci95/1", "/success_rate/p_holm", "/cost/diff_mean_per_request_ci95/0",
			"/paired/latency/diff_mean_ci95/0", "/paired/success/mcnemar/p", "/scores/judge.helpfulness/diff_mean_ci95/0",
			"/scores/judge.helpfulness/welch_p_holm", "/scores/judge.helpfulness/sequential/cs95/0", "/paired/scores/judge.helpfulness/diff_mean_ci95/1",
		} {
			if !seen["compare"][c+p] {
				t.Errorf("the comparison page does not show %s%s", c, p)
			}
		}
	}
	for _, p := range []string{"/srm/chi2", "/srm/p", "/srm/mismatch", "/srm/counts/2", "/individual/2/latency/p95"} {
		if !seen["compare"][p] {
			t.Errorf("the comparison page does not show %s", p)
		}
	}
	if len(seen["pairs"]) < 10 {
		t.Errorf("the per-sample differences show %d numbers", len(seen["pairs"]))
	}
	plots := evaluate[map[string]int](b, `({forest: document.querySelectorAll("svg.forest").length,
		classical: document.querySelectorAll("svg.forest g.classical").length,
		sequential: document.querySelectorAll("svg.forest g.sequential").length,
		paired: document.querySelectorAll("svg.forest g.paired").length})`)
	if plots["forest"] < 6 || plots["sequential"] < 2*5 || plots["paired"] < 2*5 {
		t.Errorf("forest plots: %v", plots)
	}
	b.screenshot(shots, "compare.png")
	// Another metric of the per-sample differences, read again.
	b.do(chromedp.SetValue(chromedp.CSS("#pairs-metric"), "score:judge.helpfulness"),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById("pairs-metric").dispatchEvent(new Event("change"))`)(ctx, t)
			return err
		}),
		waitFor(`document.body.dataset.pairsLoaded.endsWith(",score:judge.helpfulness,50")`))
	if seen := checkCompare(); len(seen["pairs"]) < 10 {
		t.Errorf("per-sample differences of the score: %d numbers", len(seen["pairs"]))
	}
	b.clean("compare")

	// Lifecycle: pause from the keyboard (Enter on the button, Tab to the
	// dialog's confirmation, Enter), Escape cancels, stop with the mouse,
	// delete (the admin API is on).
	b.do(chromedp.Navigate(root+"experiments/third"), waitFor(`document.body.dataset.loaded >= 1`),
		chromedp.Focus(chromedp.CSS(`button[data-action=pause]`)), chromedp.KeyEvent("\r"),
		waitFor(`document.getElementById("confirm").open && document.activeElement.id === "confirm-cancel"`),
		chromedp.KeyEvent("\t"), waitFor(`document.activeElement.id === "confirm-ok"`), chromedp.KeyEvent("\r"),
		waitFor(`document.getElementById("exp-status").textContent === "paused"`))
	if st := s.status("third"); st != "paused" {
		t.Errorf("after Pause: status %s", st)
	}
	b.do(chromedp.Focus(chromedp.CSS(`button[data-action=archive]`)), chromedp.KeyEvent("\r"),
		waitFor(`document.getElementById("confirm").open`), chromedp.KeyEvent("\u001b"),
		waitFor(`!document.getElementById("confirm").open`))
	if st := s.status("third"); st != "paused" {
		t.Errorf("after Escape: status %s, want it unchanged", st)
	}
	b.do(chromedp.Click(chromedp.CSS(`button[data-action=stop]`)), waitFor(`document.getElementById("confirm").open`),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)), waitFor(`document.getElementById("exp-status").textContent === "stopped"`))
	if st := s.status("third"); st != "stopped" {
		t.Errorf("after Stop: status %s", st)
	}
	if hidden := evaluate[[]bool](b, `["pause","resume","stop"].map(a => document.querySelector("button[data-action=" + a + "]").hidden)`); !hidden[0] || !hidden[1] || !hidden[2] {
		t.Errorf("a stopped experiment offers pause/resume/stop: hidden %v", hidden)
	}
	b.screenshot(shots, "experiment-stopped.png")
	b.do(chromedp.Click(chromedp.CSS(`button[data-action=delete]`)), waitFor(`document.getElementById("confirm").open`),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)))
	b.eventually(`document.body.dataset.page === "experiments" && document.querySelectorAll("#experiments tbody tr").length === 2`)
	if resp, err := http.Get(s.url + "/api/v1/experiments/third"); err != nil || resp.StatusCode != 404 {
		t.Errorf("after Delete: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	b.clean("lifecycle")

	// Dark, and a phone's width: the pages still load cleanly and fit.
	b.media(true)
	b.do(chromedp.Navigate(root+"experiments/demo-treatment"), waitFor(`document.body.dataset.loaded >= 1`))
	if bg := evaluate[string](b, `getComputedStyle(document.body).backgroundColor`); bg == "rgb(255, 255, 255)" {
		t.Errorf("dark mode: background %s", bg)
	}
	b.screenshot(shots, "experiment-dark.png")
	b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	for _, p := range []struct{ name, path, ready string }{
		{"experiments-phone-dark.png", "", `document.querySelectorAll("#experiments tbody tr").length === 2`},
		{"experiment-phone-dark.png", "experiments/demo-treatment", `document.body.dataset.loaded >= 1`},
		{"compare-phone-dark.png", "compare?experiments=demo-control,demo-treatment", `document.body.dataset.loaded >= 1`},
	} {
		b.do(chromedp.Navigate(root+p.path), waitFor(p.ready))
		// Wide tables scroll inside their box; the page itself does not.
		if w := evaluate[int](b, `document.documentElement.scrollWidth`); w > 390+2 {
			t.Errorf("%s: the page is %d px wide at a 390 px viewport", p.name, w)
		}
		b.screenshot(shots, p.name)
	}
	b.media(false)
	b.clean("phone")
	t.Logf("UI end-to-end took %v", time.Since(start).Round(100*time.Millisecond))
}
