// The comparison: a baseline and treatments chosen here, then each
// metric's difference (treatment − baseline) with its 95% intervals as a
// forest plot — classical, anytime-valid (sequential) and paired by sample
// where the API gives them —, p-values with Holm's adjustment, the
// sample-ratio check and the per-sample differences of /compare/pairs.
import { api, el, enc, num, interval, ptr, fmtNumber, showError, refresher, onThemeChange } from "./common.js";
import { forestPlot } from "./charts.js";

const chooser = document.getElementById("chooser");
const baselineSel = document.getElementById("baseline");
const treatmentList = document.getElementById("treatment-list");
const result = document.getElementById("result");

let all = []; // every experiment, for the chooser
let chosen = []; // baseline first
let report = null;

function fromURL() {
  const v = new URLSearchParams(location.search).get("experiments");
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

function fillChooser() {
  const [b, ...ts] = chosen;
  baselineSel.replaceChildren(...all.map((r) => el("option", { value: r.id, selected: r.id === b }, `${r.name} (${r.id})`)));
  if (!b && all.length) baselineSel.value = all[all.length - 1].id; // the oldest: usually the control
  fillTreatments(new Set(ts));
}

function fillTreatments(checked) {
  const b = baselineSel.value;
  treatmentList.replaceChildren(...all.filter((r) => r.id !== b).map((r) => el("label", {},
    el("input", { type: "checkbox", name: "treatment", value: r.id, checked: checked.has(r.id) }),
    `${r.name} `, el("code", {}, r.id), ` · ${r.status}`)));
  if (!treatmentList.children.length) treatmentList.append(el("span", { class: "note" }, "No other experiment to compare with."));
}

baselineSel.addEventListener("change", () => {
  const checked = new Set([...treatmentList.querySelectorAll("input:checked")].map((i) => i.value));
  fillTreatments(checked);
});

chooser.addEventListener("submit", (e) => {
  e.preventDefault();
  const ts = [...treatmentList.querySelectorAll("input:checked")].map((i) => i.value);
  if (!ts.length) {
    showError(new Error("Choose at least one treatment to compare with the baseline."));
    return;
  }
  chosen = [baselineSel.value, ...ts];
  history.pushState(null, "", `?experiments=${chosen.map(enc).join(",")}`);
  live.now();
});

window.addEventListener("popstate", () => {
  chosen = fromURL();
  fillChooser();
  live.now();
});

// Each metric: where its classical, sequential and paired differences are
// in a treatment's comparison, and which direction is better.
function metricDefs(cmp) {
  const names = new Set();
  for (const c of Object.values(cmp.comparison)) for (const n of Object.keys(c.scores || {})) names.add(n);
  const defs = [
    {
      key: "latency", title: "Latency, mean", unit: "ms", kind: "ms", lowerBetter: true,
      what: "Welch's t interval and p; Mann–Whitney p; paired t over shared samples.",
      classical: (c) => ({ base: ["latency"], est: "diff_mean", ci: "diff_mean_ci95", p: "welch_p", pHolm: "welch_p_holm",
        extra: [["Mann–Whitney p", "mann_whitney_p", "p"], ["Mann–Whitney p (Holm)", "mann_whitney_p_holm", "p"], ["Relative change", "relative_change_pct", "n", "%"], ["Hedges' g", "hedges_g", "n"]] }),
      sequential: () => ["latency", "sequential"],
      paired: () => ["paired", "latency"],
    },
    {
      key: "latency_pct", title: "Latency percentiles", unit: "ms", kind: "ms", lowerBetter: true,
      what: "Differences of the median, p95 and p99 with percentile-bootstrap intervals.",
      rows: [["median", "diff_median", "diff_median_ci95"], ["p95", "diff_p95", "diff_p95_ci95"], ["p99", "diff_p99", "diff_p99_ci95"]],
    },
    {
      key: "success", title: "Success rate", unit: "pts", kind: "pts", lowerBetter: false,
      what: "Newcombe's interval and the two-proportion z-test p, in percentage points; paired: McNemar over shared samples.",
      classical: () => ({ base: ["success_rate"], est: "diff", ci: "diff_ci95", p: "p", pHolm: "p_holm", extra: [] }),
      sequential: () => ["success_rate", "sequential"],
      paired: () => ["paired", "success"],
    },
    {
      key: "cost", title: "Cost per request", unit: "USD", kind: "usd", lowerBetter: true,
      what: "Welch's t interval and p on the cost of each request.",
      classical: () => ({ base: ["cost"], est: "diff_mean_per_request", ci: "diff_mean_per_request_ci95", p: "p", pHolm: "p_holm",
        extra: [["Total difference", "diff_total", "usd"], ["Baseline per success", "baseline_cost_per_success", "usd"], ["Treatment per success", "treatment_cost_per_success", "usd"]] }),
      sequential: () => ["cost", "sequential"],
      paired: () => ["paired", "cost"],
    },
  ];
  for (const n of [...names].sort()) {
    defs.push({
      key: `score:${n}`, title: `Score ${n}`, unit: "", kind: "n", lowerBetter: false, score: n,
      what: "Welch's t interval and p; Mann–Whitney p; paired t over shared samples.",
      classical: () => ({ base: ["scores", n], est: "diff_mean", ci: "diff_mean_ci95", p: "welch_p", pHolm: "welch_p_holm",
        extra: [["Mann–Whitney p", "mann_whitney_p", "p"], ["Mann–Whitney p (Holm)", "mann_whitney_p_holm", "p"]] }),
      sequential: () => ["scores", n, "sequential"],
      paired: () => ["paired", "scores", n],
    });
  }
  return defs;
}

function get(obj, path) {
  return path.reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

// scale is what the plot multiplies by to show the metric's unit.
const scales = { pts: 100 };

function verdictClass(ci, lowerBetter) {
  if (!ci || typeof ci[0] !== "number" || typeof ci[1] !== "number") return "";
  if (ci[0] > 0) return lowerBetter ? "worse" : "better";
  if (ci[1] < 0) return lowerBetter ? "better" : "worse";
  return "";
}

function metricBlock(def, cmp) {
  const treatments = cmp.experiments.slice(1);
  const scale = scales[def.kind] || 1;
  const fmt = (v) => (typeof v === "number" ? (def.kind === "usd" ? "$" : "") + fmtNumber(v * scale) : "—");
  const plotRows = [];
  const tableRows = [];
  const many = treatments.length > 1;
  const hasHolm = many;
  for (const t of treatments) {
    const c = cmp.comparison[t];
    const at = (...p) => ptr("comparison", t, ...p);
    const label = many ? `${t} · ` : "";
    if (def.rows) {
      for (const [name, est, ci] of def.rows) {
        const L = c.latency;
        plotRows.push({ label: `${label}${name}`, kind: "classical", est: L[est], lo: L[ci][0], hi: L[ci][1] });
        tableRows.push(el("tr", {},
          el("td", {}, t), el("td", {}, `${name} (bootstrap)`),
          el("td", { class: `num ${verdictClass(L[ci], def.lowerBetter)}` }, num(L[est], "compare", at("latency", est), def.kind)),
          el("td", {}, interval(L[ci], "compare", at("latency", ci), def.kind)),
          el("td", {}, "—"), hasHolm ? el("td", {}, "—") : null,
          el("td", { class: "note" }, `${L.bootstrap_resamples} resamples, seed ${L.seed}`)));
      }
      continue;
    }
    const cl = def.classical(c);
    const b = get(c, cl.base);
    if (b) {
      const ci = b[cl.ci];
      plotRows.push({ label: `${label}classical`, kind: "classical", est: b[cl.est], lo: ci && ci[0], hi: ci && ci[1] });
      const extra = cl.extra.filter(([, f]) => b[f] !== undefined).map(([name, f, kind, suffix]) =>
        el("span", { class: "sub" }, `${name}: `, num(b[f], "compare", at(...cl.base, f), kind), suffix || ""));
      tableRows.push(el("tr", { "data-kind": "classical", "data-treatment": t },
        el("td", {}, t), el("td", {}, "classical"),
        el("td", { class: `num ${verdictClass(ci, def.lowerBetter)}` }, num(b[cl.est], "compare", at(...cl.base, cl.est), def.kind)),
        el("td", {}, interval(ci, "compare", at(...cl.base, cl.ci), def.kind)),
        el("td", { class: "num" }, num(b[cl.p], "compare", at(...cl.base, cl.p), "p")),
        hasHolm ? el("td", { class: "num" }, b[cl.pHolm] === undefined ? "—" : num(b[cl.pHolm], "compare", at(...cl.base, cl.pHolm), "p")) : null,
        el("td", {}, extra)));
    }
    const sp = def.sequential(c);
    const sq = get(c, sp);
    if (sq) {
      plotRows.push({ label: `${label}sequential`, kind: "sequential", est: b ? b[cl.est] : null, lo: sq.cs95[0], hi: sq.cs95[1] });
      tableRows.push(el("tr", { "data-kind": "sequential", "data-treatment": t },
        el("td", {}, t), el("td", {}, "anytime-valid"),
        el("td", { class: "num" }, b ? num(b[cl.est], "compare", at(...cl.base, cl.est), def.kind) : "—"),
        el("td", {}, interval(sq.cs95, "compare", at(...sp, "cs95"), def.kind)),
        el("td", { class: "num" }, num(sq.p, "compare", at(...sp, "p"), "p")),
        hasHolm ? el("td", {}, "—") : null,
        el("td", { class: "note" }, "valid however often it is looked at")));
    }
    const pp = def.paired(c);
    const pr = get(c, pp);
    if (pr && pr.n > 0) {
      plotRows.push({ label: `${label}paired`, kind: "paired", est: pr.diff_mean, lo: pr.diff_mean_ci95[0], hi: pr.diff_mean_ci95[1] });
      const extra = [
        el("span", { class: "sub" }, num(pr.n, "compare", at(...pp, "n"), "int"), " pairs: ",
          num(pr.improved, "compare", at(...pp, "improved"), "int"), " improved, ",
          num(pr.regressed, "compare", at(...pp, "regressed"), "int"), " regressed, ",
          num(pr.ties, "compare", at(...pp, "ties"), "int"), " ties"),
        el("span", { class: "sub" }, "Wilcoxon p: ", num(pr.wilcoxon_p, "compare", at(...pp, "wilcoxon_p"), "p")),
      ];
      if (pr.mcnemar) {
        extra.push(el("span", { class: "sub" }, "McNemar: b ", num(pr.mcnemar.b, "compare", at(...pp, "mcnemar", "b"), "int"),
          ", c ", num(pr.mcnemar.c, "compare", at(...pp, "mcnemar", "c"), "int"),
          ", p ", num(pr.mcnemar.p, "compare", at(...pp, "mcnemar", "p"), "p")));
      }
      tableRows.push(el("tr", { "data-kind": "paired", "data-treatment": t },
        el("td", {}, t), el("td", {}, "paired t"),
        el("td", { class: `num ${verdictClass(pr.diff_mean_ci95, def.lowerBetter)}` }, num(pr.diff_mean, "compare", at(...pp, "diff_mean"), def.kind)),
        el("td", {}, interval(pr.diff_mean_ci95, "compare", at(...pp, "diff_mean_ci95"), def.kind)),
        el("td", { class: "num" }, num(pr.p, "compare", at(...pp, "p"), "p")),
        hasHolm ? el("td", {}, "—") : null,
        el("td", {}, extra)));
    }
  }
  const unit = def.unit ? ` (${def.unit})` : "";
  return el("div", { class: "metric", "data-metric": def.key },
    el("h3", {}, def.title + unit, " ", el("small", {}, def.lowerBetter ? "lower is better" : "higher is better")),
    el("p", { class: "what" }, def.what),
    forestPlot(plotRows.map((r) => ({ ...r, est: mul(r.est, scale), lo: mul(r.lo, scale), hi: mul(r.hi, scale) })),
      { fmt: (v) => (typeof v === "number" ? (def.kind === "usd" ? "$" : "") + fmtNumber(v) : "—"), title: `${def.title}: differences with 95% intervals`, width: plotWidth() }),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Treatment"), el("th", { scope: "col" }, "Interval"),
        el("th", { scope: "col", class: "num" }, "Difference"), el("th", { scope: "col" }, "95% interval"),
        el("th", { scope: "col", class: "num" }, "p"), hasHolm ? el("th", { scope: "col", class: "num" }, "p (Holm)") : null,
        el("th", { scope: "col" }, ""))),
      el("tbody", {}, tableRows))));
  function mul(v, s) {
    return typeof v === "number" ? v * s : v;
  }
}

// The forest plots are drawn at the width they get, and again when it
// changes, so their text stays legible on a phone and a wide screen.
const metricsBox = document.getElementById("metrics");
function plotWidth() {
  return Math.min(metricsBox.clientWidth - 30, 900);
}
let drawnWidth = 0;
function showMetrics() {
  drawnWidth = plotWidth();
  metricsBox.replaceChildren(...metricDefs(report).map((d) => metricBlock(d, report)));
}
new ResizeObserver(() => {
  if (report && Math.abs(plotWidth() - drawnWidth) > 24) showMetrics();
}).observe(metricsBox);

function showSRM(cmp) {
  const s = cmp.srm;
  const box = document.getElementById("srm");
  if (!s) {
    box.replaceChildren("No sample-ratio check in this answer.");
    return;
  }
  box.className = "srm" + (s.mismatch ? " mismatch" : "");
  box.replaceChildren(
    el("p", {}, s.mismatch
      ? el("strong", { class: "worse" }, "Sample-ratio mismatch: the experiments did not get the share of events they were meant to. Find the cause before trusting any interval.")
      : s.mismatch === false ? "No sample-ratio mismatch (p ≥ 0.001)." : "Not enough events to check."),
    el("dl", {},
      ...cmp.experiments.map((id, i) => el("div", {}, el("dt", {}, id),
        el("dd", {}, num(s.counts[i], "compare", ptr("srm", "counts", i), "int"), " events, expected share ",
          num(s.expected_shares[i], "compare", ptr("srm", "expected_shares", i), "pct")))),
      el("div", {}, el("dt", {}, "χ²"), el("dd", {}, num(s.chi2, "compare", "/srm/chi2"))),
      el("div", {}, el("dt", {}, "df"), el("dd", {}, num(s.df, "compare", "/srm/df", "int"))),
      el("div", {}, el("dt", {}, "p"), el("dd", {}, num(s.p, "compare", "/srm/p", "p"))),
      el("div", {}, el("dt", {}, "mismatch"), el("dd", {}, num(s.mismatch, "compare", "/srm/mismatch")))));
}

function showArms(cmp) {
  const names = new Set();
  for (const a of cmp.individual) for (const n of Object.keys(a.scores || {})) names.add(n);
  const rows = [
    ["Events", ["summary", "total_events"], "int"],
    ["Latency mean", ["latency", "mean"], "ms"],
    ["Latency p50", ["latency", "p50"], "ms"],
    ["Latency p95", ["latency", "p95"], "ms"],
    ["Latency p99", ["latency", "p99"], "ms"],
    ["Success rate", ["reliability", "success_rate"], "pct"],
    ["Cost per request", ["cost", "mean_per_request"], "usd"],
    ["Cost total", ["cost", "total"], "usd"],
    ...[...names].sort().map((n) => [`Score ${n} mean`, ["scores", n, "mean"], "n"]),
  ];
  document.getElementById("arms").replaceChildren(
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, ""),
      ...cmp.experiments.map((id, i) => el("th", { scope: "col", class: "num" },
        el("a", { href: `experiments/${enc(id)}` }, id), i === 0 ? el("span", { class: "sub" }, "baseline") : null)))),
    el("tbody", {}, rows.map(([label, path, kind]) => el("tr", {}, el("th", { scope: "row" }, label),
      ...cmp.individual.map((a, i) => el("td", { class: "num" }, num(get(a, path) ?? null, "compare", ptr("individual", i, ...path), kind)))))));
}

// Per-sample differences, for a treatment that shares samples with the
// baseline.
const pairsTreatment = document.getElementById("pairs-treatment");
const pairsMetric = document.getElementById("pairs-metric");
const pairsLimit = document.getElementById("pairs-limit");

function setupPairs(cmp) {
  const shared = cmp.experiments.slice(1).filter((t) => cmp.comparison[t].paired && cmp.comparison[t].paired.n_pairs > 0);
  document.getElementById("pairs-section").hidden = shared.length === 0;
  if (!shared.length) return false;
  const keepT = pairsTreatment.value, keepM = pairsMetric.value;
  pairsTreatment.replaceChildren(...shared.map((t) => el("option", { value: t, selected: t === keepT }, t)));
  const names = new Set();
  for (const t of shared) for (const n of Object.keys(cmp.comparison[t].paired.scores || {})) names.add(n);
  const metrics = ["success", "latency", "cost", ...[...names].sort().map((n) => `score:${n}`)];
  pairsMetric.replaceChildren(...metrics.map((m) => el("option", { value: m, selected: m === keepM }, m)));
  return true;
}

async function loadPairs() {
  const b = chosen[0], t = pairsTreatment.value, m = pairsMetric.value;
  if (!t || !m) return;
  const data = await api(`api/v1/compare/pairs?experiments=${enc(b)},${enc(t)}&metric=${enc(m)}&limit=${enc(pairsLimit.value)}`);
  const kind = m === "latency" ? "ms" : m === "cost" ? "usd" : "n";
  const lowerBetter = m === "latency" || m === "cost";
  document.getElementById("pairs-summary").replaceChildren(
    "Samples both answered: ", num(data.improved, "pairs", "/improved", "int"), " improved, ",
    num(data.regressed, "pairs", "/regressed", "int"), " regressed, ", num(data.ties, "pairs", "/ties", "int"),
    ` ties (${t} against ${b}); the largest differences first.`);
  document.querySelector("#pairs tbody").replaceChildren(...data.pairs.map((p, i) => {
    const cls = p.diff === 0 || p.diff === null ? "" : (p.diff < 0) === lowerBetter ? "better" : "worse";
    return el("tr", { "data-sample": p.sample_id },
      el("th", { scope: "row" }, el("code", {}, p.sample_id)),
      el("td", { class: "num" }, num(p.baseline, "pairs", ptr("pairs", i, "baseline"), kind)),
      el("td", { class: "num" }, num(p.treatment, "pairs", ptr("pairs", i, "treatment"), kind)),
      el("td", { class: `num ${cls}` }, num(p.diff, "pairs", ptr("pairs", i, "diff"), kind)));
  }));
  document.body.dataset.pairsLoaded = `${b},${t},${m},${pairsLimit.value}`;
}

for (const s of [pairsTreatment, pairsMetric, pairsLimit]) {
  s.addEventListener("change", () => loadPairs().catch(showError));
}
document.getElementById("pairs-form").addEventListener("submit", (e) => e.preventDefault());

async function load() {
  all = await api("api/v1/experiments");
  if (!baselineSel.options.length || !report) fillChooser();
  if (chosen.length < 2) {
    result.hidden = true;
    return;
  }
  report = await api(`api/v1/compare?experiments=${chosen.map(enc).join(",")}`);
  result.hidden = false;
  showSRM(report);
  showArms(report);
  showMetrics();
  if (setupPairs(report)) await loadPairs();
  document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
}

const live = refresher(load, () => chosen.length >= 2 && all.some((r) => chosen.includes(r.id) && r.status === "running"), 10000);

onThemeChange(() => live.now());

chosen = fromURL();
live.now();
