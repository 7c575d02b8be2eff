// What every page shares: reading the API, showing its numbers, the
// confirmation dialog and the refresh loop. Every URL is relative to the
// page's <base>, the route prefix, so the pages work wherever the sidecar
// is mounted.

// ApiError is an answer in the API's error envelope.
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.errorType = body && body.errorType;
    this.code = body && body.code;
  }
}

// api fetches path (relative, e.g. "api/v1/experiments") and returns the
// envelope's data.
export async function api(path, init) {
  const resp = await fetch(path, Object.assign({ headers: { Accept: "application/json" } }, init));
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    throw new ApiError(resp.status, { error: `${path}: HTTP ${resp.status}, not JSON` });
  }
  if (!resp.ok || body.status !== "success") throw new ApiError(resp.status, body);
  return body.data;
}

export const enc = encodeURIComponent;

// el builds an element: el("td", {class: "num"}, child, "text", ...).
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Formatting. Numbers are shown with `digits` significant digits (4 by
// default, 2 for p-values); the element keeps the API's exact value in
// data-value, and data-src/data-path name where it came from (a JSON
// pointer into that source's data), so a test can check one against the
// other.
const nf = new Map();
function numberFormat(opts) {
  const key = JSON.stringify(opts);
  if (!nf.has(key)) nf.set(key, new Intl.NumberFormat("en-US", opts));
  return nf.get(key);
}

// fmtNumber shows v with `digits` significant digits, in exponent
// notation below `small` (and from 1e9 on).
export function fmtNumber(v, digits = 4, small = 1e-6) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e15) return numberFormat({ maximumFractionDigits: 0 }).format(v);
  if (a >= small && a < 1e9) return numberFormat({ maximumSignificantDigits: digits }).format(v);
  return v.toExponential(digits - 1);
}

// kinds: how a number is shown. scale multiplies it for display (a rate
// as a percentage), unit follows it.
export const kinds = {
  n: { digits: 4 },
  int: { digits: 4 },
  ms: { digits: 4, unit: " ms" },
  usd: { digits: 4, prefix: "$" },
  pct: { digits: 4, scale: 100, unit: "%" },
  pts: { digits: 3, scale: 100, unit: " pts" },
  // p-values: two significant digits, tiny ones in exponent notation as
  // the API gives them (never 0 before 1e-308).
  p: { digits: 2, small: 1e-4 },
  s: { digits: 4, unit: " s" },
};

// num returns a span showing v (a number, null, or a boolean) of the given
// kind, tagged with its source.
export function num(v, src, path, kind = "n") {
  const k = kinds[kind] || kinds.n;
  const attrs = { class: "v", "data-src": src, "data-path": path, "data-value": JSON.stringify(v === undefined ? null : v) };
  let text;
  if (typeof v === "boolean") {
    text = v ? "yes" : "no";
    attrs.class += v ? " yes" : " no";
  } else if (v === null || v === undefined) {
    text = "—";
  } else {
    const scale = k.scale || 1;
    if (scale !== 1) attrs["data-scale"] = scale;
    attrs["data-digits"] = k.digits;
    const shown = fmtNumber(v * scale, k.digits, k.small);
    text = (v < 0 && k.prefix ? "-" + k.prefix + shown.slice(1) : (k.prefix || "") + shown) + (k.unit || "");
  }
  return el("span", attrs, text);
}

// interval shows [lower, upper] of path (each bound tagged /0 and /1).
export function interval(ci, src, path, kind = "n") {
  if (!ci || ci[0] === null || ci[0] === undefined) return num(null, src, path, kind);
  return el("span", { class: "ci" }, "[", num(ci[0], src, path + "/0", kind), ", ", num(ci[1], src, path + "/1", kind), "]");
}

// ptr escapes one JSON pointer token (RFC 6901).
export function ptr(...tokens) {
  return tokens.map((t) => "/" + String(t).replace(/~/g, "~0").replace(/\//g, "~1")).join("");
}

export function fmtTime(us) {
  if (us === null || us === undefined) return "—";
  const d = new Date(us / 1000);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function fmtAgo(us, nowMs = Date.now()) {
  if (us === null || us === undefined) return "—";
  const s = Math.round((nowMs - us / 1000) / 1000);
  if (s < 0) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined) return "—";
  sec = Math.round(sec);
  const h = Math.floor(sec / 3600), m = Math.floor((sec % 3600) / 60), s = sec % 60;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s} s`;
  return `${s} s`;
}

export function badge(status) {
  return el("span", { class: `badge ${status}`, "data-field": "status" }, status);
}

export function showError(err) {
  const box = document.getElementById("error");
  if (!box) return;
  if (!err) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = err.message || String(err);
}

// confirmAction opens the page's dialog and resolves true when the user
// confirms. The dialog is modal: focus stays inside, Escape cancels.
export function confirmAction(title, text, okLabel) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dlg.returnValue = "";
  return new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

// refresher calls load now and then every `every` ms while wanted()
// says so and the page is visible; load's errors are shown, not thrown.
export function refresher(load, wanted, every = 5000) {
  let timer = null;
  let running = false;
  const live = document.getElementById("live");
  async function tick() {
    timer = null;
    if (running) return;
    running = true;
    try {
      await load();
      showError(null);
    } catch (e) {
      showError(e);
    } finally {
      running = false;
    }
    schedule();
  }
  function schedule() {
    if (timer) clearTimeout(timer);
    timer = null;
    const on = wanted();
    if (live) live.textContent = on ? `live · refreshing every ${every / 1000} s` : "";
    if (on && !document.hidden) timer = setTimeout(tick, every);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && wanted()) tick();
    else schedule();
  });
  return { now: tick, schedule };
}

// colors reads the theme's colors for the charts, which draw on a canvas.
export function colors() {
  const cs = getComputedStyle(document.documentElement);
  const get = (n) => cs.getPropertyValue(n).trim();
  return {
    fg: get("--fg"), muted: get("--muted"), grid: get("--grid"), bar: get("--bar"),
    series: [get("--series-1"), get("--series-2"), get("--series-3"), get("--series-4")],
    classical: get("--classical"), sequential: get("--sequential"), paired: get("--paired"),
  };
}

// onThemeChange calls f when the system switches between light and dark.
export function onThemeChange(f) {
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", f);
}
