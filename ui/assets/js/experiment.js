// One experiment: its record and lifecycle, the exact analysis
// (/metrics), the latency distribution, the windows over time, the latest
// events and the export links. It refreshes in place while the
// experiment runs.
import {
  api, el, enc, num, interval, ptr, badge, fmtTime, fmtDuration, fmtNumber, showError,
  confirmAction, refresher, onThemeChange,
} from "./common.js";
import { TimeChart, Histogram } from "./charts.js";

const id = document.body.dataset.experiment;
const adminAPI = document.body.dataset.adminApi === "true";
const base = `api/v1/experiments/${enc(id)}`;

let record = null;
const charts = {};
let windowSize = null;
let events = []; // newest first

// Windows: about 60 over the experiment's span, of a round size.
const sizes = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
function windowFor(durationSec) {
  const want = (durationSec || 0) / 60;
  return sizes.find((s) => s >= want) || Math.ceil(want / 86400) * 86400;
}
function sizeLabel(s) {
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

function fact(label, ...value) {
  return el("div", {}, el("dt", {}, label), el("dd", {}, ...value));
}

function showRecord(r) {
  record = r;
  document.title = `${r.name} · CrucibleTelemetry`;
  document.getElementById("exp-name").textContent = r.name;
  document.getElementById("exp-status").replaceWith(Object.assign(badge(r.status), { id: "exp-status" }));
  const hyp = document.getElementById("exp-hypothesis");
  hyp.hidden = !r.hypothesis;
  hyp.textContent = r.hypothesis || "";
  const src = "record";
  document.getElementById("exp-facts").replaceChildren(...[
    fact("ID", el("code", {}, r.id)),
    fact("Condition", r.condition),
    fact("Tags", r.tags.length ? r.tags.join(", ") : "—"),
    fact("Events stored", num(r.events_stored, src, "/events_stored", "int")),
    fact("Started", fmtTime(Date.parse(r.started_at) * 1000)),
    r.stopped_at ? fact("Stopped", fmtTime(Date.parse(r.stopped_at) * 1000)) : null,
    r.paused_at ? fact("Paused since", fmtTime(Date.parse(r.paused_at) * 1000)) : null,
    fact("Active", el("span", { title: `${r.active_seconds} s` }, fmtDuration(r.active_seconds))),
    r.pause_count ? fact("Pauses", num(r.pause_count, src, "/pause_count", "int"), " (", fmtDuration(r.paused_seconds), ")") : null,
    r.sampling_rate !== 1 ? fact("Sampling rate", num(r.sampling_rate, src, "/sampling_rate")) : null,
    r.storage && r.storage.status !== "ok" ? fact("Storage", el("span", { class: "worse" }, r.storage.status, r.storage.error ? `: ${r.storage.error}` : "")) : null,
  ].filter(Boolean));
  const prog = document.getElementById("exp-progress");
  prog.hidden = !r.sample_size;
  if (r.sample_size) {
    document.getElementById("exp-progress-bar").value = Math.min(r.events_stored / r.sample_size, 1);
    document.getElementById("exp-progress-label").replaceChildren(
      num(r.events_stored, src, "/events_stored", "int"), " of ", num(r.sample_size, src, "/sample_size", "int"),
      " events (sample size)", r.stop_at_sample_size ? "; stops when reached" : "");
  }
  const allowed = {
    running: ["pause", "stop", "archive", "delete"],
    paused: ["resume", "stop", "archive", "delete"],
    stopped: ["archive", "delete"],
    archived: ["delete"],
  }[r.status] || [];
  for (const b of document.querySelectorAll("#actions button[data-action]")) {
    b.hidden = !allowed.includes(b.dataset.action) || (b.dataset.action === "delete" && !adminAPI);
  }
  for (const f of ["csv", "jsonl", "json"]) {
    const a = document.getElementById(`export-${f}`);
    a.href = `${base}/export?format=${f}`;
    a.setAttribute("download", `${r.id}.${f}`);
  }
  document.getElementById("compare-link").href = `compare?experiments=${enc(r.id)}`;
}

function card(title, rows) {
  return el("div", { class: "card" }, el("h3", {}, title),
    el("dl", {}, rows.filter(Boolean).flatMap(([label, value]) => [el("dt", {}, label), el("dd", {}, value)])));
}

function showAnalysis(m) {
  const s = "metrics";
  const L = m.latency, C = m.cost, R = m.reliability, T = m.tokens, S = m.summary;
  const cards = [
    card("Summary", [
      ["Events", num(S.total_events, s, "/summary/total_events", "int")],
      ["First", el("span", { "data-format": "time", "data-src": s, "data-path": "/summary/time_range/start", "data-value": JSON.stringify(S.time_range.start) }, fmtTime(S.time_range.start))],
      ["Last", el("span", { "data-format": "time", "data-src": s, "data-path": "/summary/time_range/end", "data-value": JSON.stringify(S.time_range.end) }, fmtTime(S.time_range.end))],
      ["Span", num(S.duration_seconds, s, "/summary/duration_seconds", "s")],
      ...Object.entries(m.events || {}).map(([name, v]) => [el("code", {}, name), num(v.count, s, ptr("events", name, "count"), "int")]),
    ]),
    card("Latency (ms)", L ? [
      ["Count", num(L.count, s, "/latency/count", "int")],
      ["Mean", num(L.mean, s, "/latency/mean", "ms")],
      ["Median", num(L.median, s, "/latency/median", "ms")],
      ["Std dev", num(L.std_dev, s, "/latency/std_dev", "ms")],
      ["Min", num(L.min, s, "/latency/min", "ms")],
      ["p50", num(L.p50, s, "/latency/p50", "ms")],
      ["p90", num(L.p90, s, "/latency/p90", "ms")],
      ["p95", num(L.p95, s, "/latency/p95", "ms")],
      ["p99", num(L.p99, s, "/latency/p99", "ms")],
      ["Max", num(L.max, s, "/latency/max", "ms")],
    ] : [["", "no latency"]]),
    card("Cost (USD)", C ? [
      ["Count", num(C.count, s, "/cost/count", "int")],
      ["Total", num(C.total, s, "/cost/total", "usd")],
      ["Mean per request", num(C.mean_per_request, s, "/cost/mean_per_request", "usd")],
      ["Median per request", num(C.median_per_request, s, "/cost/median_per_request", "usd")],
      ["Per 1k requests", num(C.cost_per_1k_requests, s, "/cost/cost_per_1k_requests", "usd")],
      ["Per 1M requests", num(C.cost_per_1m_requests, s, "/cost/cost_per_1m_requests", "usd")],
    ] : [["", "no cost"]]),
    card("Reliability", R ? [
      ["Requests", num(R.total_requests, s, "/reliability/total_requests", "int")],
      ["Judged", num(R.judged, s, "/reliability/judged", "int")],
      ["Successful", num(R.successful, s, "/reliability/successful", "int")],
      ["Failed", num(R.failed, s, "/reliability/failed", "int")],
      ["Success rate", num(R.success_rate, s, "/reliability/success_rate", "pct")],
      ["95% CI (Wilson)", interval(R.success_rate_ci95, s, "/reliability/success_rate_ci95", "pct")],
      ["Failure rate", num(R.failure_rate, s, "/reliability/failure_rate", "pct")],
      ["SLA 99%", num(R.sla_99, s, "/reliability/sla_99")],
      ["SLA 99.9%", num(R.sla_999, s, "/reliability/sla_999")],
      ["SLA 99.99%", num(R.sla_9999, s, "/reliability/sla_9999")],
    ] : [["", "nothing judged"]]),
    card("Tokens", T ? [
      ["Events with tokens", num(T.count, s, "/tokens/count", "int")],
      ["Prompt", num(T.total_prompt, s, "/tokens/total_prompt", "int")],
      ["Completion", num(T.total_completion, s, "/tokens/total_completion", "int")],
      ["Total", num(T.total, s, "/tokens/total", "int")],
      ["Mean prompt", num(T.mean_prompt, s, "/tokens/mean_prompt")],
      ["Mean completion", num(T.mean_completion, s, "/tokens/mean_completion")],
      ["Mean total", num(T.mean_total, s, "/tokens/mean_total")],
    ] : [["", "no tokens"]]),
  ];
  document.getElementById("analysis").replaceChildren(...cards);

  const scores = Object.entries(m.scores || {});
  document.getElementById("scores-section").hidden = scores.length === 0;
  document.querySelector("#scores tbody").replaceChildren(...scores.map(([name, v]) => {
    const p = (f) => ptr("scores", name, f);
    return el("tr", { "data-score": name },
      el("th", { scope: "row" }, el("code", {}, name)),
      el("td", { class: "num" }, num(v.count, s, p("count"), "int")),
      el("td", { class: "num" }, num(v.mean, s, p("mean"))),
      el("td", {}, interval(v.mean_ci95, s, p("mean_ci95"))),
      el("td", { class: "num" }, num(v.std_dev, s, p("std_dev"))),
      el("td", { class: "num" }, num(v.median, s, p("median"))),
      el("td", { class: "num" }, num(v.min, s, p("min"))),
      el("td", { class: "num" }, num(v.max, s, p("max"))));
  }));
}

function showHistogram(h, m) {
  const L = m.latency || {};
  if (!charts.hist) charts.hist = new Histogram(document.getElementById("chart-latency"));
  charts.hist.set(h, [
    { label: "p50", value: L.p50 ?? null },
    { label: "p95", value: L.p95 ?? null },
    { label: "p99", value: L.p99 ?? null },
  ]);
  document.getElementById("dist-caption").replaceChildren(
    `Events per ${h.width === null ? "" : fmtNumber(h.width) + " ms "}latency bin over all `,
    num(h.count, "histogram", "/count", "int"),
    " stored events with a latency; the dashed lines mark the exact p50, p95 and p99.");
}

function showWindows(ws, size) {
  const x = ws.map((w) => w.window_start / 1e6);
  document.getElementById("window-size").textContent = `windows of ${sizeLabel(size)}`;
  const make = (key, defs, fmt) => {
    if (!charts[key]) charts[key] = new TimeChart(document.getElementById(key), defs, { fmt });
    return charts[key];
  };
  make("chart-rate", [{ label: "events/s" }]).setData([x, ws.map((w) => w.event_count / size)]);
  make("chart-lat-time", [{ label: "mean" }, { label: "p50" }, { label: "p95" }])
    .setData([x, ws.map((w) => w.mean_latency), ws.map((w) => w.p50_latency), ws.map((w) => w.p95_latency)]);
  make("chart-cost", [{ label: "USD" }], (v) => (v === null ? "—" : "$" + fmtNumber(v)))
    .setData([x, ws.map((w) => w.total_cost)]);
  make("chart-success", [{ label: "success %" }], (v) => (v === null ? "—" : fmtNumber(v, 3)))
    .setData([x, ws.map((w) => {
      const judged = w.success_count + w.failure_count;
      return judged ? (100 * w.success_count) / judged : null;
    })]);
}

function scoresText(sc) {
  if (!sc) return "";
  return Object.entries(sc).map(([k, v]) => `${k} ${fmtNumber(v, 3)}`).join(", ");
}

function showEvents() {
  document.querySelector("#events tbody").replaceChildren(...events.map((e) => el("tr", { "data-event-id": e.event_id },
    el("td", { title: String(e.timestamp) }, fmtTime(e.timestamp)),
    el("td", {}, el("code", {}, e.event_name)),
    el("td", {}, e.model || "—"),
    el("td", {}, e.sample_id || "—"),
    el("td", { class: "num" }, num(e.latency_ms, `event:${e.event_id}`, "/latency_ms")),
    el("td", { class: "num" }, num(e.cost_usd, `event:${e.event_id}`, "/cost_usd", "usd")),
    el("td", {}, e.success === null ? "—" : el("span", { class: e.success ? "yes" : "worse" }, e.success ? "yes" : "no")),
    el("td", {}, scoresText(e.scores)))));
}

const keepEvents = 15;
async function loadEvents() {
  const newest = events.length ? events[0].timestamp : null;
  const q = newest === null ? `last_n=${keepEvents}` : `from=${newest}&last_n=${keepEvents}`;
  const got = await api(`${base}/events?${q}`);
  const seen = new Set(events.map((e) => e.event_id));
  const merged = events.concat(got.filter((e) => !seen.has(e.event_id)));
  merged.sort((a, b) => b.timestamp - a.timestamp || (a.event_id < b.event_id ? 1 : -1));
  events = merged.slice(0, keepEvents);
  showEvents();
}

async function load() {
  const [rec, m, h] = await Promise.all([
    api(base),
    api(`${base}/metrics`),
    api(`ui/experiments/${enc(id)}/latency-histogram`),
    loadEvents(),
  ]);
  showRecord(rec);
  showAnalysis(m);
  showHistogram(h, m);
  windowSize = windowFor(m.summary.duration_seconds);
  const ws = await api(`${base}/windows?size=${windowSize}s`);
  showWindows(ws, windowSize);
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

const live = refresher(load, () => record !== null && (record.status === "running" || record.status === "paused"));

const verbs = {
  pause: ["Pause", "While it is paused, events sent to it are dropped (counted, not stored)."],
  resume: ["Resume", "Events sent to it are stored again."],
  stop: ["Stop", "A stopped experiment rejects new events, and cannot be resumed."],
  archive: ["Archive", "Stops it if needed, compacts its storage and writes a .tar.gz archive; it stays readable."],
  delete: ["Delete", "Removes the experiment and all its data, its archive and its series. This cannot be undone."],
};

for (const b of document.querySelectorAll("#actions button[data-action]")) {
  b.addEventListener("click", async () => {
    const action = b.dataset.action;
    const [verb, text] = verbs[action];
    if (!(await confirmAction(`${verb} ${record ? record.name : id}?`, text, verb))) return;
    b.disabled = true;
    try {
      if (action === "delete") {
        await api(base, { method: "DELETE" });
        location.assign(document.baseURI);
        return;
      }
      showRecord(await api(`${base}/${action}`, { method: "POST" }));
      showError(null);
      await live.now();
    } catch (e) {
      showError(e);
    } finally {
      b.disabled = false;
    }
  });
}

onThemeChange(() => {
  for (const c of Object.values(charts)) c.build();
  live.now();
});

live.now();
