#!/usr/bin/python3
"""Independent reference values for the analysis package's tests.

Writes the datasets (datasets.json) and what numpy and scipy compute for
them (expected.json). Run from this directory with Debian's python3-numpy
and python3-scipy:  /usr/bin/python3 reference.py
"""
import json
import math

import numpy as np
from scipy import stats

rng = np.random.default_rng(20261127)


def point(ts, event="req_llm.request.stop", latency=None, cost=None, success=None, tokens=None):
    return {"ts": int(ts), "event": event, "latency": latency, "cost": cost, "success": success, "tokens": tokens}


datasets = {}
base = 1_764_220_000_000_000
datasets["seed_latency_1_100"] = [point(base + i * 1000, latency=float(i)) for i in range(1, 101)]
datasets["seed_ten"] = [
    point(base + i * 1_000_000, latency=100.0 * i, cost=0.001 * i, success=(i <= 8), tokens=[10 * i, 20 * i, 30 * i])
    for i in range(1, 11)
]
datasets["n1"] = [point(base, latency=42.5, cost=0.25, success=True, tokens=[1, 2, 3])]
datasets["n2"] = [point(base, latency=10.0, success=True), point(base + 7, latency=30.0, success=False, event="req_llm.request.exception")]
datasets["ties"] = [point(base + i * 10, latency=float([5, 5, 5, 7, 7, 9][i % 6]), success=(i % 3 != 0)) for i in range(60)]
datasets["all_null_latency"] = [point(base + i, cost=0.01, success=True) for i in range(5)]
datasets["all_failures"] = [point(base + i * 500, latency=float(i), success=False) for i in range(1, 21)]
rand = []
for i in range(5000):
    lat = float(np.round(rng.lognormal(mean=6, sigma=0.8), 6))
    cost = None if i % 17 == 0 else float(np.round(rng.uniform(0, 0.05), 9))
    succ = None if i % 23 == 0 else bool(rng.uniform() < 0.93)
    toks = None if i % 5 == 0 else [int(p) for p in (rng.integers(10, 3000), rng.integers(1, 800))]
    if toks is not None:
        toks.append(toks[0] + toks[1])
    ev = ["req_llm.request.stop", "req_llm.request.exception", "custom.step"][i % 3]
    rand.append(point(base + int(rng.integers(0, 3_600_000_000)), event=ev,
                      latency=None if i % 11 == 0 else lat, cost=cost, success=succ, tokens=toks))
datasets["random"] = rand

Z = stats.norm.ppf(0.975)


def num(x):
    return None if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))) else float(x)


def describe(xs):
    if not xs:
        return {k: None for k in ["mean", "median", "std_dev", "min", "max", "p50", "p90", "p95", "p99"]} | {"count": 0}
    a = np.array(xs, dtype=float)
    return {
        "count": len(a), "mean": float(np.mean(a)), "median": float(np.median(a)),
        "std_dev": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()), "max": float(a.max()),
        "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
        "p95": float(np.percentile(a, 95)), "p99": float(np.percentile(a, 99)),
    }


def wilson(k, n):
    if n == 0:
        return [None, None]
    p = k / n
    den = 1 + Z * Z / n
    center = (p + Z * Z / (2 * n)) / den
    half = Z / den * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return [max(0.0, center - half), min(1.0, center + half)]


def analyze(points):
    lat = [p["latency"] for p in points if p["latency"] is not None]
    cost = [p["cost"] for p in points if p["cost"] is not None]
    judged = [p["success"] for p in points if p["success"] is not None]
    ok = sum(1 for s in judged if s)
    toks = [p["tokens"] for p in points if p["tokens"] is not None]
    ts = [p["ts"] for p in points]
    names = {}
    for p in points:
        names[p["event"]] = names.get(p["event"], 0) + 1
    rate = ok / len(judged) if judged else None
    c = np.array(cost, dtype=float)
    return {
        "summary": {"total_events": len(points), "time_range": {"start": min(ts), "end": max(ts)},
                    "duration_seconds": (max(ts) - min(ts)) / 1e6, "event_types": names},
        "latency": describe(lat),
        "cost": {"count": len(cost), "total": float(c.sum()) if cost else None,
                 "mean_per_request": float(c.mean()) if cost else None,
                 "median_per_request": float(np.median(c)) if cost else None,
                 "cost_per_1k_requests": float(c.sum() / len(c) * 1000) if cost else None,
                 "cost_per_1m_requests": float(c.sum() / len(c) * 1e6) if cost else None},
        "reliability": {"total_requests": len(points), "judged": len(judged), "successful": ok,
                        "failed": len(judged) - ok, "success_rate": rate,
                        "failure_rate": (len(judged) - ok) / len(judged) if judged else None,
                        "success_rate_ci95": wilson(ok, len(judged)),
                        "sla_99": None if rate is None else rate >= 0.99,
                        "sla_999": None if rate is None else rate >= 0.999,
                        "sla_9999": None if rate is None else rate >= 0.9999},
        "tokens": {"count": len(toks), "total_prompt": sum(t[0] for t in toks),
                   "total_completion": sum(t[1] for t in toks), "total": sum(t[2] for t in toks),
                   "mean_prompt": float(np.mean([t[0] for t in toks])) if toks else None,
                   "mean_completion": float(np.mean([t[1] for t in toks])) if toks else None,
                   "mean_total": float(np.mean([t[2] for t in toks])) if toks else None},
        "events": {k: {"count": v} for k, v in names.items()},
    }


def windows(points, size, step):
    pts = sorted(points, key=lambda p: p["ts"])
    first, last = pts[0]["ts"], pts[-1]["ts"]
    out = []
    start = first
    while start <= last:
        inside = [p for p in pts if start <= p["ts"] < start + size]
        if inside:
            lat = [p["latency"] for p in inside if p["latency"] is not None]
            cost = [p["cost"] for p in inside if p["cost"] is not None]
            out.append({
                "window_start": start, "window_end": start + size, "event_count": len(inside),
                "mean_latency": float(np.mean(lat)) if lat else None,
                "p50_latency": float(np.percentile(lat, 50)) if lat else None,
                "p95_latency": float(np.percentile(lat, 95)) if lat else None,
                "total_cost": float(np.sum(cost)) if cost else None,
                "success_count": sum(1 for p in inside if p["success"] is True),
                "failure_count": sum(1 for p in inside if p["success"] is False),
            })
        start += step
    return out


expected = {}
for name, pts in datasets.items():
    expected[name] = {"report": analyze(pts)}
# Windows: of 5 minutes every 5 minutes, and of 10 minutes every 2.5; and a
# window longer than the whole span.
expected["random"]["windows_5m_5m"] = windows(datasets["random"], 300_000_000, 300_000_000)
expected["random"]["windows_10m_150s"] = windows(datasets["random"], 600_000_000, 150_000_000)
expected["seed_ten"]["windows_1h_1h"] = windows(datasets["seed_ten"], 3_600_000_000, 3_600_000_000)

with open("datasets.json", "w") as f:
    json.dump(datasets, f, separators=(",", ":"))
with open("expected.json", "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
print("numpy", np.__version__, "scipy", __import__("scipy").__version__)
