// The experiments: status, condition, events stored, progress toward
// sample_size, last event; filtered by status and tag (in the URL, so a
// filtered list can be bookmarked).
import { api, el, enc, num, badge, fmtAgo, fmtTime, refresher } from "./common.js";

const form = document.getElementById("filters");
const statusSel = document.getElementById("filter-status");
const tagInput = document.getElementById("filter-tag");
const tbody = document.querySelector("#experiments tbody");
const empty = document.getElementById("empty");
const tags = document.getElementById("known-tags");

const params = new URLSearchParams(location.search);
statusSel.value = params.get("status") || "";
tagInput.value = params.get("tag") || "";

// last[id] is the newest event time seen (µs), from /metrics: the record
// has none. Only experiments that can still change are asked again, and
// only about the events from that time on.
const last = new Map();
let list = [];

async function lastEvent(rec) {
  const known = last.get(rec.id);
  if (known && known.stored === rec.events_stored) return known.us;
  let path = `api/v1/experiments/${enc(rec.id)}/metrics`;
  if (known && known.us !== null) path += `?from=${known.us}`;
  const m = await api(path);
  const us = m.summary.time_range.end ?? (known ? known.us : null);
  last.set(rec.id, { stored: rec.events_stored, us });
  return us;
}

function row(rec, lastUs) {
  const src = `experiment:${rec.id}`;
  const href = `experiments/${enc(rec.id)}`;
  const target = rec.sample_size;
  let progress;
  if (target) {
    const frac = Math.min(rec.events_stored / target, 1);
    progress = el("td", {},
      el("progress", { max: 1, value: frac, "aria-label": `${rec.events_stored} of ${target} events` }),
      " ", num(rec.events_stored, src, "/events_stored", "int"), " / ", num(target, src, "/sample_size", "int"),
      rec.stop_at_sample_size ? el("span", { class: "sub" }, "stops when reached") : null);
  } else {
    progress = el("td", { class: "no" }, "no sample size");
  }
  return el("tr", { "data-id": rec.id },
    el("td", {}, el("a", { href }, rec.name), el("span", { class: "sub" }, rec.id)),
    el("td", {}, badge(rec.status)),
    el("td", {}, rec.condition),
    el("td", {}, rec.tags.join(", ")),
    el("td", { class: "num" }, num(rec.events_stored, src, "/events_stored", "int")),
    progress,
    el("td", { "data-field": "last_event", "data-value": JSON.stringify(lastUs), title: lastUs === null ? "" : fmtTime(lastUs) },
      lastUs === null ? "no events" : fmtAgo(lastUs)),
    el("td", {}, el("a", { class: "quiet", href: `compare?experiments=${enc(rec.id)}` }, "Compare…")),
  );
}

async function load() {
  const q = new URLSearchParams();
  if (statusSel.value) q.set("status", statusSel.value);
  if (tagInput.value.trim()) q.set("tag", tagInput.value.trim());
  list = await api("api/v1/experiments" + (q.size ? "?" + q : ""));
  const lasts = await Promise.all(list.map((r) => lastEvent(r).catch(() => null)));
  tbody.replaceChildren(...list.map((r, i) => row(r, lasts[i])));
  empty.hidden = list.length > 0;
  // Known tags, for the filter's suggestions.
  const known = new Set(list.flatMap((r) => r.tags));
  for (const o of tags.options) known.add(o.value);
  tags.replaceChildren(...[...known].sort().map((t) => el("option", { value: t })));
}

const live = refresher(load, () => list.some((r) => r.status === "running" || r.status === "paused"));

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const q = new URLSearchParams();
  if (statusSel.value) q.set("status", statusSel.value);
  if (tagInput.value.trim()) q.set("tag", tagInput.value.trim());
  history.replaceState(null, "", q.size ? "?" + q : location.pathname);
  live.now();
});
form.addEventListener("reset", () => {
  setTimeout(() => form.requestSubmit(), 0);
});
statusSel.addEventListener("change", () => form.requestSubmit());

live.now();
