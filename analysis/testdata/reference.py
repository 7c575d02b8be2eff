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


def point(ts, event="req_llm.request.stop", latency=None, cost=None, success=None, tokens=None, sample=None, scores=None,
          cluster=None):
    p = {"ts": int(ts), "event": event, "latency": latency, "cost": cost, "success": success, "tokens": tokens}
    # sample (sample_id), scores and cluster (the value of the ?cluster=
    # key) are written only when given, so the datasets that have none of
    # them read as they always did.
    if sample is not None:
        p["sample"] = sample
    if scores is not None:
        p["scores"] = scores
    if cluster is not None:
        p["cluster"] = cluster
    return p


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


def randomset(n, mu, p_ok, cost_hi, seed_shift):
    out = []
    for i in range(n):
        lat = float(np.round(rng.lognormal(mean=mu, sigma=0.7), 6))
        cost = None if i % 19 == 0 else float(np.round(rng.uniform(0, cost_hi), 9))
        succ = None if i % 29 == 0 else bool(rng.uniform() < p_ok)
        out.append(point(base + seed_shift + i * 1000, latency=None if i % 13 == 0 else lat, cost=cost, success=succ))
    return out


datasets["control"] = randomset(2000, 6.0, 0.95, 0.02, 0)
datasets["treatment_a"] = randomset(1800, 5.9, 0.97, 0.025, 7)
datasets["treatment_b"] = randomset(2200, 6.0, 0.94, 0.02, 11)

# Far-tail separations, from a generator of their own so the sets above stay
# as they were: p-values near 1e-30 and far below.
far_rng = np.random.default_rng(20260301)


def farset(n, mu, p_ok, cost_mu, seed_shift):
    return [point(base + seed_shift + i * 1000, latency=float(np.round(far_rng.normal(mu, 10), 6)),
                  cost=float(np.round(far_rng.normal(cost_mu, 0.001), 9)), success=bool(far_rng.uniform() < p_ok))
            for i in range(n)]


datasets["far_baseline"] = farset(300, 100.0, 0.5, 0.010, 0)
datasets["far_treatment"] = farset(300, 110.0, 0.95, 0.0109, 3)
datasets["very_far_treatment"] = farset(300, 125.0, 0.99, 0.012, 5)

# Evaluation runs: events with sample ids and quality scores, for the score
# statistics and the paired comparison (SPEC §13). A generator of their own,
# after every set above, so those stay as they were.
pair_rng = np.random.default_rng(20261203)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


difficulty = pair_rng.normal(0, 1, 360)
level = pair_rng.lognormal(6, 0.5, 360)


def evalset(samples, lat_factor, ok_shift, help_shift, seed_shift, copy_of=None, copied=(), extra_score=None):
    """Events of samples, each one to three times (repetitions), whose
    latency, success and scores depend on the sample's difficulty, so that
    the arms correlate by sample. Samples in copied repeat copy_of's events
    exactly (zero differences). Some events have no sample id."""
    out = []
    ts = base + seed_shift
    for s in samples:
        sid = "s%03d" % s
        if copy_of is not None and s in copied:
            for p in copy_of:
                if p.get("sample") == sid:
                    q = dict(p)
                    q["ts"] = ts
                    ts += 1000
                    out.append(q)
            continue
        for _ in range(int(pair_rng.integers(1, 4))):
            lat = float(np.round(level[s] * lat_factor * math.exp(0.15 * pair_rng.normal()), 3))
            cost = None if pair_rng.uniform() < 0.05 else float(np.round(pair_rng.uniform(0.001, 0.02) * lat_factor, 6))
            succ = None if pair_rng.uniform() < 0.05 else bool(pair_rng.uniform() < sigmoid(1.5 + ok_shift - difficulty[s]))
            scores = {"exact_match": int(pair_rng.uniform() < sigmoid(1 + ok_shift - difficulty[s]))}
            if pair_rng.uniform() < 0.9:
                scores["judge.helpfulness"] = float(np.round(min(1, max(0, 0.7 + help_shift - 0.1 * difficulty[s] + 0.1 * pair_rng.normal())), 1))
            if extra_score is not None:
                scores[extra_score] = float(np.round(pair_rng.uniform(0, 10), 2))
            out.append(point(ts, latency=lat, cost=cost, success=succ, sample=sid, scores=scores))
            ts += 1000
    for i in range(15):  # events outside any sample: in the unpaired statistics only
        sid = "" if i % 2 else None
        out.append(point(ts, latency=float(np.round(pair_rng.lognormal(6, 0.5), 3)), success=bool(pair_rng.uniform() < 0.8),
                         sample=sid, scores={"exact_match": int(pair_rng.uniform() < 0.7)}))
        ts += 1000
    return out


datasets["eval_base"] = evalset(range(0, 340), 1.0, 0.0, 0.0, 0)
# Samples 0–19 only in the baseline, 340–359 only in treatment a; a's
# samples 100–129 are the baseline's events again.
datasets["eval_treat_a"] = evalset(range(20, 360), 0.9, 0.4, 0.05, 3, copy_of=datasets["eval_base"], copied=range(100, 130))
datasets["eval_treat_b"] = evalset(range(0, 300), 1.02, -0.1, -0.02, 5, extra_score="only_b")


def plain(sid, ts, latency, success, cost=None, scores=None):
    return point(base + ts, latency=latency, cost=cost, success=success, sample=sid, scores=scores)


# One shared sample ("x", twice in the baseline), one more on each side.
datasets["pair_one_base"] = [plain("x", 0, 100.0, True, 0.01, {"q": 0.5}), plain("x", 1, 120.0, False, 0.02, {"q": 1.0}),
                             plain("y", 2, 90.0, True, 0.01, {"q": 0.25})]
datasets["pair_one_treat"] = [plain("x", 0, 80.0, True, 0.01, {"q": 1.0}), plain("z", 1, 70.0, False, None, {"q": 0.0})]
# Every pair equal: no difference has a sign.
# Costs are binary fractions, so that sums in any order are exact.
datasets["pair_equal_base"] = [plain("e%02d" % i, i, float(50 + 5 * i), i % 3 != 0, (i + 1) / 1024, {"q": float(i % 4)}) for i in range(12)]
datasets["pair_equal_treat"] = [plain("e%02d" % i, 100 + i, float(50 + 5 * i), i % 3 != 0, (i + 1) / 1024, {"q": float(i % 4)})
                                for i in reversed(range(12))]
# Paired differences far beyond chance: p-values near 1e-20 and below.
far_base, far_treat = [], []
for i in range(300):
    lat = float(np.round(pair_rng.normal(200, 30), 3))
    acc = float(np.round(pair_rng.uniform(0.2, 0.8), 3))
    far_base.append(plain("f%03d" % i, i, lat, bool(pair_rng.uniform() < 0.5), scores={"acc": acc}))
    far_treat.append(plain("f%03d" % i, 1000 + i, float(np.round(lat - 3 + pair_rng.normal(0, 5), 3)), bool(pair_rng.uniform() < 0.95),
                           scores={"acc": float(np.round(acc + 0.05 + pair_rng.normal(0, 0.04), 3))}))
datasets["pair_far_base"], datasets["pair_far_treat"] = far_base, far_treat
# Samples without any scores.
datasets["noscore_base"] = [plain("n%d" % (i % 7), i, float(10 + i), i % 4 != 0) for i in range(20)]
datasets["noscore_treat"] = [plain("n%d" % (i % 9), i, float(12 + i), i % 5 != 0) for i in range(20)]

Z = stats.norm.ppf(0.975)


def t975(df):
    """Student's t 97.5th percentile. scipy 1.10's t.ppf is off by up to
    ~2e-8 relative (df near 40); Newton steps on its accurate t.sf bring it
    to the last digits. The latency and cost intervals keep plain t.ppf, so
    their expected values stay as they were."""
    q = stats.t.ppf(0.975, df)
    for _ in range(3):
        q += (stats.t.sf(q, df) - 0.025) / stats.t.pdf(q, df)
    return float(q)


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


def score_values(points, name):
    return [p["scores"][name] for p in points if name in (p.get("scores") or {})]


def score_names(points):
    return sorted({k for p in points for k in (p.get("scores") or {})})


def mean_ci95(xs):
    if len(xs) < 2:
        return [None, None]
    a = np.array(xs, dtype=float)
    h = t975(len(a) - 1) * np.std(a, ddof=1) / math.sqrt(len(a))
    return [float(np.mean(a) - h), float(np.mean(a) + h)]


def describe_scores(points):
    out = {}
    for name in score_names(points):
        a = np.array(score_values(points, name), dtype=float)
        out[name] = {"count": len(a), "mean": float(np.mean(a)), "std_dev": float(np.std(a, ddof=1)) if len(a) > 1 else 0.0,
                     "median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "mean_ci95": mean_ci95(list(a))}
    return out


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
        "scores": describe_scores(points),
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


def welch(b, t, ppf=lambda df: stats.t.ppf(0.975, df)):
    if not b or not t:
        return dict(diff=None, ci=[None, None], t=None, df=None, p=None)
    diff = float(np.mean(t) - np.mean(b))
    if len(b) < 2 or len(t) < 2:
        return dict(diff=diff, ci=[None, None], t=None, df=None, p=None)
    vb, vt = np.var(b, ddof=1) / len(b), np.var(t, ddof=1) / len(t)
    se = math.sqrt(vb + vt)
    if se == 0:
        return dict(diff=diff, ci=[None, None], t=None, df=None, p=None)
    df = (vb + vt) ** 2 / (vb ** 2 / (len(b) - 1) + vt ** 2 / (len(t) - 1))
    res = stats.ttest_ind(t, b, equal_var=False)
    q = ppf(df)
    return dict(diff=diff, ci=[diff - q * se, diff + q * se], t=float(res.statistic), df=float(df), p=float(res.pvalue))


def hedges(b, t):
    if len(b) < 2 or len(t) < 2:
        return None
    nb, nt = len(b), len(t)
    pooled = math.sqrt(((nb - 1) * np.var(b, ddof=1) + (nt - 1) * np.var(t, ddof=1)) / (nb + nt - 2))
    if pooled == 0:
        return None
    return float((1 - 3 / (4 * (nb + nt) - 9)) * (np.mean(t) - np.mean(b)) / pooled)


def mwu(b, t):
    if not b or not t:
        return None, None
    if len(set(b) | set(t)) == 1:
        return float(len(t) * len(b) / 2), None
    r = stats.mannwhitneyu(t, b, use_continuity=True, alternative="two-sided", method="asymptotic")
    return float(r.statistic), float(r.pvalue)


def proportions(kb, nb, kt, nt):
    out = dict(baseline=kb / nb if nb else None, treatment=kt / nt if nt else None, diff=None, diff_ci95=[None, None], z=None, p=None)
    if not nb or not nt:
        return out
    pb, pt = kb / nb, kt / nt
    d = pt - pb
    lb, ub = wilson(kb, nb)
    lt, ut = wilson(kt, nt)
    out["diff"] = d
    out["diff_ci95"] = [d - math.sqrt((pt - lt) ** 2 + (ub - pb) ** 2), d + math.sqrt((ut - pt) ** 2 + (pb - lb) ** 2)]
    pool = (kb + kt) / (nb + nt)
    se = math.sqrt(pool * (1 - pool) * (1 / nb + 1 / nt))
    if se > 0:
        out["z"] = d / se
        out["p"] = float(2 * stats.norm.sf(abs(d / se)))
    return out


SEQ_ALPHA = 0.05


def sequential(b, t, tuning=5000.0):
    """SPEC §14's asymptotic confidence sequence for mean(t) − mean(b), written out."""
    nb, nt = len(b), len(t)
    if nb < 2 or nt < 2:
        return {"cs95": [None, None], "p": None}
    b, t = np.array(b, dtype=float), np.array(t, dtype=float)
    d = float(np.mean(t) - np.mean(b))
    n = nb + nt
    v = n * (np.var(b, ddof=1) / nb + np.var(t, ddof=1) / nt)
    if v == 0:
        return {"cs95": [None, None], "p": None}
    la = -2 * math.log(SEQ_ALPHA)
    rho2 = (la + math.log(la + 1)) / tuning
    half = math.sqrt(v) * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / SEQ_ALPHA))
    p = min(1.0, math.sqrt(n * rho2 + 1) * math.exp(-d * d * n * n * rho2 / (2 * v * (n * rho2 + 1))))
    return {"cs95": [d - half, d + half], "p": p}


def holm(ps):
    idx = sorted([i for i, p in enumerate(ps) if p is not None], key=lambda i: ps[i])
    out = [None] * len(ps)
    running, m = 0.0, len(idx)
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (m - j) * ps[i]))
        out[i] = running
    return out


def compare_scores(bpts, tpts):
    out = {}
    for name in sorted(set(score_names(bpts)) | set(score_names(tpts))):
        bv, tv = score_values(bpts, name), score_values(tpts, name)
        w = welch(bv, tv, t975)
        u, up = mwu(bv, tv)
        out[name] = {"baseline_mean": float(np.mean(bv)) if bv else None, "treatment_mean": float(np.mean(tv)) if tv else None,
                     "diff_mean": w["diff"], "diff_mean_ci95": w["ci"], "welch_t": w["t"], "welch_df": w["df"], "welch_p": w["p"],
                     "mann_whitney_u": u, "mann_whitney_p": up, "sequential": sequential(bv, tv)}
    return out


def groups(pts):
    """Events by sample id; events without one (None or "") belong to none."""
    out = {}
    for p in pts:
        if p.get("sample"):
            out.setdefault(p["sample"], []).append(p)
    return out


def value_of(p, metric):
    if metric == "latency":
        return p["latency"]
    if metric == "cost":
        return p["cost"]
    if metric == "success":
        return None if p["success"] is None else (1.0 if p["success"] else 0.0)
    return (p.get("scores") or {}).get(metric[len("score:"):])


def sample_value(events, metric):
    """A sample's value in an arm: the mean of its events' defined values."""
    vs = [v for v in (value_of(e, metric) for e in events) if v is not None]
    return math.fsum(vs) / len(vs) if vs else None


def pairs_of(bg, tg, metric):
    out = []
    for s in sorted(set(bg) & set(tg)):
        bv, tv = sample_value(bg[s], metric), sample_value(tg[s], metric)
        if bv is not None and tv is not None:
            out.append((s, bv, tv))
    return out


def paired_stats(pairs, higher_better):
    n = len(pairs)
    b = np.array([p[1] for p in pairs], dtype=float)
    t = np.array([p[2] for p in pairs], dtype=float)
    d = t - b
    better = (d > 0) if higher_better else (d < 0)
    worse = (d < 0) if higher_better else (d > 0)
    out = {"n": n, "baseline_mean": None, "treatment_mean": None, "diff_mean": None, "diff_mean_ci95": [None, None],
           "t": None, "df": None, "p": None, "wilcoxon_w": None, "wilcoxon_p": None,
           "improved": int(better.sum()), "regressed": int(worse.sum()), "ties": int((d == 0).sum())}
    if n == 0:
        return out
    out["baseline_mean"], out["treatment_mean"], out["diff_mean"] = float(np.mean(b)), float(np.mean(t)), float(np.mean(d))
    if n < 2:
        return out
    out["df"] = n - 1
    sd = float(np.std(d, ddof=1))
    if sd > 0:
        r = stats.ttest_rel(t, b)
        h = t975(n - 1) * sd / math.sqrt(n)
        out["t"], out["p"] = float(r.statistic), float(r.pvalue)
        out["diff_mean_ci95"] = [float(np.mean(d)) - h, float(np.mean(d)) + h]
    if np.any(d != 0):
        w = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx")
        out["wilcoxon_w"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    return out


def mcnemar(pairs):
    b = sum(1 for _, x, y in pairs if x == 1.0 and y == 0.0)
    c = sum(1 for _, x, y in pairs if x == 0.0 and y == 1.0)
    return {"b": b, "c": c, "p": float(stats.binomtest(b, b + c, 0.5).pvalue) if b + c else None}


def paired(bpts, tpts):
    bg, tg = groups(bpts), groups(tpts)
    succ = pairs_of(bg, tg, "success")
    names = sorted(set(score_names(bpts)) | set(score_names(tpts)))
    return {"key": "sample_id", "n_pairs": len(set(bg) & set(tg)), "baseline_only": len(set(bg) - set(tg)),
            "treatment_only": len(set(tg) - set(bg)),
            "latency": paired_stats(pairs_of(bg, tg, "latency"), False), "cost": paired_stats(pairs_of(bg, tg, "cost"), False),
            "success": paired_stats(succ, True) | {"mcnemar": mcnemar(succ)},
            "scores": {name: paired_stats(pairs_of(bg, tg, "score:" + name), True) for name in names}}


def compare(bpts, tpts_list):
    def parts(pts):
        lat = [p["latency"] for p in pts if p["latency"] is not None]
        cost = [p["cost"] for p in pts if p["cost"] is not None]
        judged = [p["success"] for p in pts if p["success"] is not None]
        return lat, cost, sum(1 for s in judged if s), len(judged), len(pts)
    bl, bc, bk, bn, be = parts(bpts)
    bj = [1.0 if p["success"] else 0.0 for p in bpts if p["success"] is not None]
    out = []
    for tpts in tpts_list:
        tl, tc, tk, tn, te = parts(tpts)
        tj = [1.0 if p["success"] else 0.0 for p in tpts if p["success"] is not None]
        lw, cw = welch(bl, tl), welch(bc, tc)
        u, up = mwu(bl, tl)
        bm = float(np.mean(bl)) if bl else None
        tm = float(np.mean(tl)) if tl else None
        pct = lambda xs, q: float(np.percentile(xs, q))
        diffq = lambda q: pct(tl, q) - pct(bl, q) if bl and tl else None
        out.append({
            "latency": {"baseline_mean": bm, "treatment_mean": tm, "diff_mean": lw["diff"], "diff_mean_ci95": lw["ci"],
                        "welch_t": lw["t"], "welch_df": lw["df"], "welch_p": lw["p"],
                        "relative_change_pct": (tm - bm) / bm * 100 if bm and tm is not None else None,
                        "hedges_g": hedges(bl, tl), "mann_whitney_u": u, "mann_whitney_p": up,
                        "diff_median": diffq(50), "diff_p95": diffq(95), "diff_p99": diffq(99),
                        "sequential": sequential(bl, tl)},
            "success_rate": proportions(bk, bn, tk, tn) | {"sequential": sequential(bj, tj)},
            "cost": {"baseline_mean_per_request": float(np.mean(bc)) if bc else None,
                     "treatment_mean_per_request": float(np.mean(tc)) if tc else None,
                     "diff_mean_per_request": cw["diff"], "diff_mean_per_request_ci95": cw["ci"],
                     "welch_t": cw["t"], "welch_df": cw["df"], "p": cw["p"],
                     "diff_total": float(np.sum(tc) - np.sum(bc)) if (bc or tc) else None,
                     "baseline_cost_per_success": float(np.sum(bc)) / bk if bk and bc else None,
                     "treatment_cost_per_success": float(np.sum(tc)) / tk if tk and tc else None,
                     "sequential": sequential(bc, tc)},
            "event_count_difference": te - be,
            "scores": compare_scores(bpts, tpts),
            "paired": paired(bpts, tpts),
        })
    if len(out) > 1:
        for section, key, holm_key in [("latency", "welch_p", "welch_p_holm"), ("latency", "mann_whitney_p", "mann_whitney_p_holm"),
                                       ("success_rate", "p", "p_holm"), ("cost", "p", "p_holm")]:
            for c, h in zip(out, holm([c[section][key] for c in out])):
                c[section][holm_key] = h
        for name in sorted({name for c in out for name in c["scores"]}):
            having = [c for c in out if name in c["scores"]]
            for key in ["welch_p", "mann_whitney_p"]:
                for c, h in zip(having, holm([c["scores"][name][key] for c in having])):
                    c["scores"][name][key + "_holm"] = h
    return out


comparisons = {
    "control_vs_a_b": compare(datasets["control"], [datasets["treatment_a"], datasets["treatment_b"]]),
    "control_vs_a": compare(datasets["control"], [datasets["treatment_a"]]),
    "ties": compare(datasets["ties"], [datasets["all_failures"]]),
    "n1_vs_n2": compare(datasets["n1"], [datasets["n2"]]),
    "no_latency_side": compare(datasets["all_null_latency"], [datasets["seed_ten"]]),
    "seed_vs_random": compare(datasets["seed_ten"], [datasets["random"]]),
    "far_tail": compare(datasets["far_baseline"], [datasets["far_treatment"], datasets["very_far_treatment"]]),
    "eval_a_b": compare(datasets["eval_base"], [datasets["eval_treat_a"], datasets["eval_treat_b"]]),
    "eval_a": compare(datasets["eval_base"], [datasets["eval_treat_a"]]),
    "eval_b_vs_a": compare(datasets["eval_treat_b"], [datasets["eval_treat_a"]]),
    "pair_one": compare(datasets["pair_one_base"], [datasets["pair_one_treat"]]),
    "pair_equal": compare(datasets["pair_equal_base"], [datasets["pair_equal_treat"]]),
    "pair_far": compare(datasets["pair_far_base"], [datasets["pair_far_treat"]]),
    "noscore": compare(datasets["noscore_base"], [datasets["noscore_treat"]]),
    "noscore_vs_eval": compare(datasets["noscore_base"], [datasets["eval_base"], datasets["eval_treat_b"]]),
}

# Sequential intervals at other tunings: the larger N*, the narrower the
# sequence around n ≈ N*.
sequential_tunings = {}
for tuning in [500.0, 5000.0, 50000.0]:
    bl = [p["latency"] for p in datasets["control"] if p["latency"] is not None]
    tl = [p["latency"] for p in datasets["treatment_a"] if p["latency"] is not None]
    sequential_tunings[str(int(tuning))] = sequential(bl, tl, tuning)


def srm(counts, allocation):
    shares = np.array(allocation, dtype=float) / np.sum(allocation)
    total = sum(counts)
    r = stats.chisquare(counts, f_exp=shares * total)
    return {"counts": counts, "expected_shares": [float(x) for x in shares], "chi2": float(r.statistic),
            "df": len(counts) - 1, "p": float(r.pvalue), "mismatch": bool(r.pvalue < 0.001)}


srm_cases = [
    {"name": "equal_fine", "counts": [1000, 1040], "allocation": [1, 1]},
    {"name": "equal_mismatch", "counts": [1000, 1200], "allocation": [1, 1]},
    {"name": "three_arms", "counts": [5021, 4890, 5113], "allocation": [1, 1, 1]},
    {"name": "weighted", "counts": [2000, 8100], "allocation": [20, 80]},
    {"name": "weighted_shares", "counts": [2050, 6900, 1050], "allocation": [0.2, 0.7, 0.1]},
    {"name": "far_tail", "counts": [10000, 12500], "allocation": [1, 1]},
]
for c in srm_cases:
    c["expected"] = srm(c["counts"], c["allocation"])


def power(xs, mde, alpha=0.05, pw=0.8):
    a = np.array(xs, dtype=float)
    var = float(np.var(a, ddof=1))
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(pw)
    return {"n": len(a), "mean": float(np.mean(a)), "variance": var, "mde": mde, "alpha": alpha, "power": pw,
            "n_per_arm": int(math.ceil(2 * z * z * var / (mde * mde))), "mde_at_n": float(z * math.sqrt(2 * var / len(a)))}


ctl = datasets["control"]
ctl_lat = [p["latency"] for p in ctl if p["latency"] is not None]
ctl_cost = [p["cost"] for p in ctl if p["cost"] is not None]
ctl_ok = [1.0 if p["success"] else 0.0 for p in ctl if p["success"] is not None]
power_cases = [
    {"name": "latency", "dataset": "control", "metric": "latency", "mde": 25.0, "alpha": 0.05, "power": 0.8, "values": ctl_lat},
    {"name": "latency_strict", "dataset": "control", "metric": "latency", "mde": 10.0, "alpha": 0.01, "power": 0.9, "values": ctl_lat},
    {"name": "cost", "dataset": "control", "metric": "cost", "mde": 0.0005, "alpha": 0.05, "power": 0.8, "values": ctl_cost},
    {"name": "success", "dataset": "control", "metric": "success", "mde": 0.01, "alpha": 0.05, "power": 0.8, "values": ctl_ok},
    {"name": "success_loose", "dataset": "control", "metric": "success", "mde": 0.03, "alpha": 0.1, "power": 0.5, "values": ctl_ok},
]
ev = datasets["eval_base"]
power_cases += [
    {"name": "score", "dataset": "eval_base", "metric": "score:judge.helpfulness", "mde": 0.05, "alpha": 0.05, "power": 0.8,
     "values": score_values(ev, "judge.helpfulness")},
    {"name": "score_binary", "dataset": "eval_base", "metric": "score:exact_match", "mde": 0.1, "alpha": 0.05, "power": 0.9,
     "values": score_values(ev, "exact_match")},
]
for c in power_cases:
    c["expected"] = {"metric": c["metric"]} | power(c.pop("values"), c["mde"], c["alpha"], c["power"])

def pair_list(bpts, tpts, metric, limit):
    higher = metric != "latency" and metric != "cost"
    rows = [(s, b, t, t - b) for s, b, t in pairs_of(groups(bpts), groups(tpts), metric)]
    better = sum(1 for r in rows if (r[3] > 0 if higher else r[3] < 0))
    worse = sum(1 for r in rows if (r[3] < 0 if higher else r[3] > 0))
    ties = sum(1 for r in rows if r[3] == 0)
    rows.sort(key=lambda r: (-abs(r[3]), r[0]))
    if limit > 0:
        rows = rows[:limit]
    return {"key": "sample_id", "metric": metric, "improved": better, "regressed": worse,
            "ties": ties,
            "pairs": [{"sample_id": s, "baseline": b, "treatment": t, "diff": d} for s, b, t, d in rows]}


pair_cases = [
    {"name": "latency_top15", "baseline": "eval_base", "treatment": "eval_treat_a", "metric": "latency", "limit": 15},
    {"name": "cost_all", "baseline": "eval_base", "treatment": "eval_treat_a", "metric": "cost", "limit": 0},
    {"name": "success_top10", "baseline": "eval_base", "treatment": "eval_treat_a", "metric": "success", "limit": 10},
    {"name": "helpfulness_all", "baseline": "eval_base", "treatment": "eval_treat_a", "metric": "score:judge.helpfulness", "limit": -1},
    {"name": "exact_match_top5", "baseline": "eval_base", "treatment": "eval_treat_b", "metric": "score:exact_match", "limit": 5},
    {"name": "score_one_side", "baseline": "eval_base", "treatment": "eval_treat_b", "metric": "score:only_b", "limit": 0},
    {"name": "single_pair", "baseline": "pair_one_base", "treatment": "pair_one_treat", "metric": "success", "limit": 100},
    {"name": "all_equal", "baseline": "pair_equal_base", "treatment": "pair_equal_treat", "metric": "latency", "limit": 100},
    {"name": "no_scores", "baseline": "noscore_base", "treatment": "noscore_treat", "metric": "score:x", "limit": 100},
    {"name": "far", "baseline": "pair_far_base", "treatment": "pair_far_treat", "metric": "score:acc", "limit": 3},
]
for c in pair_cases:
    c["expected"] = pair_list(datasets[c["baseline"]], datasets[c["treatment"]], c["metric"], c["limit"])

# Clustered standard errors (SPEC §14): events in clusters (sessions, say)
# of unequal sizes whose values share a cluster effect, singleton clusters,
# events without the key, clusters that lack a metric, one cluster, n = 1.
# A generator of their own, after every set above, so those stay as they
# were.
clu_rng = np.random.default_rng(20261211)


def sessionset(n_sessions, mu, p_ok, seed_shift, effect=0.5, lone=12, prefix="sess"):
    """Sessions of 1 to 25 events (geometric sizes, so a few are large and
    many are singletons) whose latency, cost, success and scores move
    together within a session; lone events have no cluster key. Some
    events lack a metric, and one session has no latency at all."""
    out = []
    ts = base + seed_shift
    for s in range(n_sessions):
        key = "%s-%03d" % (prefix, s)
        size = int(min(25, clu_rng.geometric(0.15)))
        u = clu_rng.normal(0, effect)
        for _ in range(size):
            lat = None if (s == 3 or clu_rng.uniform() < 0.08) else float(np.round(math.exp(mu + u + 0.4 * clu_rng.normal()), 3))
            cost = None if clu_rng.uniform() < 0.1 else float(np.round(0.002 * math.exp(0.5 * u) * clu_rng.uniform(0.5, 1.5), 9))
            succ = None if clu_rng.uniform() < 0.07 else bool(clu_rng.uniform() < sigmoid(p_ok + u))
            scores = {"acc": float(np.round(min(1, max(0, 0.6 + 0.2 * u + 0.15 * clu_rng.normal())), 2))}
            if clu_rng.uniform() < 0.6:
                scores["judge"] = int(clu_rng.uniform() < sigmoid(1 + u))
            out.append(point(ts, latency=lat, cost=cost, success=succ, scores=scores, cluster=key))
            ts += 1000
    for i in range(lone):
        out.append(point(ts, latency=float(np.round(math.exp(mu + 0.5 * clu_rng.normal()), 3)), cost=0.002,
                         success=bool(clu_rng.uniform() < sigmoid(p_ok)), scores={"acc": float(np.round(clu_rng.uniform(), 2))}))
        ts += 1000
    return out


datasets["clu_sessions_base"] = sessionset(60, 6.0, 1.5, 0)
datasets["clu_sessions_treat"] = sessionset(55, 5.9, 2.0, 3)
datasets["clu_sessions_treat2"] = sessionset(70, 6.05, 1.2, 5, effect=0.8, lone=0, prefix="s2")
# One cluster: every clustered error is null, though n is large.
datasets["clu_one_cluster"] = [point(base + i * 1000, latency=float(100 + i % 7), cost=0.001 * (1 + i % 3), success=i % 4 != 0,
                                     scores={"acc": (i % 5) / 4}, cluster="only") for i in range(30)]
# One cluster and one event without the key: two clusters.
datasets["clu_one_plus_lone"] = datasets["clu_one_cluster"][:10] + [point(base + 99_000, latency=250.0, cost=0.01, success=False,
                                                                          scores={"acc": 0.0})]
# One event.
datasets["clu_n1"] = [point(base, latency=42.0, cost=0.5, success=True, scores={"acc": 1.0}, cluster="a")]
# Latency in one cluster only (undefined), cost and success in two; an
# empty key is a cluster like any other; a score only some clusters have.
datasets["clu_metric_clusters"] = (
    [point(base + i, latency=float(10 + i), cost=0.25 * i, success=i % 2 == 0, scores={"acc": 0.5 + 0.125 * (i % 3)}, cluster="x")
     for i in range(6)]
    + [point(base + 10 + i, cost=0.125 * i, success=i != 1, cluster="") for i in range(4)]
    + [point(base + 20 + i, success=True, scores={"rare": float(i)}, cluster="y%d" % i) for i in range(3)]
)


def clustered_se(values, keys):
    """√(Σ_c (Σ_{i∈c} (x_i − x̄))²) / n, written with np.unique and
    np.bincount: keys[i] is x_i's cluster, None a cluster of its own.
    None for n < 2 or fewer than two clusters."""
    n = len(values)
    if n < 2:
        return None
    x = np.asarray(values, dtype=float)
    keyed = np.array([k for k in keys if k is not None], dtype=str)
    _, codes = np.unique(keyed, return_inverse=True)
    labels = np.empty(n, dtype=np.int64)
    have = np.array([k is not None for k in keys])
    labels[have] = codes
    labels[~have] = codes.max(initial=-1) + 1 + np.arange(int((~have).sum()))
    if len(np.unique(labels)) < 2:
        return None
    per_cluster = np.bincount(labels, weights=x - np.mean(x))
    return float(math.sqrt(np.sum(per_cluster ** 2)) / n)


ZC = 1.959963984540054


def clustered_ci(estimate, se):
    return [None, None] if estimate is None or se is None else [estimate - ZC * se, estimate + ZC * se]


def cluster_of(p, key):
    if key == "sample":
        return p.get("sample") or None
    return p.get("cluster")


def clustered_parts(pts, key):
    """Each metric's values and their clusters."""
    parts = {
        "latency": [(p["latency"], cluster_of(p, key)) for p in pts if p["latency"] is not None],
        "cost": [(p["cost"], cluster_of(p, key)) for p in pts if p["cost"] is not None],
        "success": [(1.0 if p["success"] else 0.0, cluster_of(p, key)) for p in pts if p["success"] is not None],
    }
    for name in score_names(pts):
        parts["score:" + name] = [(p["scores"][name], cluster_of(p, key)) for p in pts if name in (p.get("scores") or {})]
    return {m: clustered_se([v for v, _ in vs], [k for _, k in vs]) for m, vs in parts.items()}


def analyze_clustered(pts, key):
    r = analyze(pts)
    se = clustered_parts(pts, key)
    r["latency"]["mean_se_clustered"] = se["latency"]
    r["latency"]["mean_ci95_clustered"] = clustered_ci(r["latency"]["mean"], se["latency"])
    r["cost"]["mean_se_clustered"] = se["cost"]
    r["cost"]["mean_ci95_clustered"] = clustered_ci(r["cost"]["mean_per_request"], se["cost"])
    r["reliability"]["success_rate_se_clustered"] = se["success"]
    r["reliability"]["success_rate_ci95_clustered"] = clustered_ci(r["reliability"]["success_rate"], se["success"])
    for name, d in r["scores"].items():
        d["mean_se_clustered"] = se["score:" + name]
        d["mean_ci95_clustered"] = clustered_ci(d["mean"], se["score:" + name])
    return r


def diff_ci(diff, se_b, se_t):
    if se_b is None or se_t is None:
        return [None, None]
    return clustered_ci(diff, math.sqrt(se_b ** 2 + se_t ** 2))


def compare_clustered(bpts, tpts_list, key):
    out = compare(bpts, tpts_list)
    sb = clustered_parts(bpts, key)
    for c, tpts in zip(out, tpts_list):
        st = clustered_parts(tpts, key)
        c["latency"]["diff_mean_ci95_clustered"] = diff_ci(c["latency"]["diff_mean"], sb["latency"], st["latency"])
        c["cost"]["diff_mean_per_request_ci95_clustered"] = diff_ci(c["cost"]["diff_mean_per_request"], sb["cost"], st["cost"])
        c["success_rate"]["diff_ci95_clustered"] = diff_ci(c["success_rate"]["diff"], sb["success"], st["success"])
        for name, sc in c["scores"].items():
            sc["diff_mean_ci95_clustered"] = diff_ci(sc["diff_mean"], sb.get("score:" + name), st.get("score:" + name))
    return out


clustered_reports = {
    "sessions_base": ("clu_sessions_base", "cluster"),
    "sessions_treat2": ("clu_sessions_treat2", "cluster"),
    "one_cluster": ("clu_one_cluster", "cluster"),
    "one_plus_lone": ("clu_one_plus_lone", "cluster"),
    "n1": ("clu_n1", "cluster"),
    "metric_clusters": ("clu_metric_clusters", "cluster"),
    "no_keys": ("random", "cluster"),  # every event a cluster of its own
    "eval_by_sample": ("eval_base", "sample"),
}
clustered_comparisons = {
    "sessions": (["clu_sessions_base", "clu_sessions_treat"], "cluster"),
    "sessions_two": (["clu_sessions_base", "clu_sessions_treat", "clu_sessions_treat2"], "cluster"),
    "one_cluster_side": (["clu_one_cluster", "clu_sessions_treat"], "cluster"),
    "n1_vs_lone": (["clu_n1", "clu_one_plus_lone"], "cluster"),
    "metric_clusters": (["clu_metric_clusters", "clu_one_plus_lone"], "cluster"),
    "no_keys": (["control", "treatment_a"], "cluster"),
    "eval_by_sample": (["eval_base", "eval_treat_a", "eval_treat_b"], "sample"),
}

expected = {}
for name, pts in datasets.items():
    expected[name] = {"report": analyze(pts)}
# Windows: of 5 minutes every 5 minutes, and of 10 minutes every 2.5; and a
# window longer than the whole span.
expected["random"]["windows_5m_5m"] = windows(datasets["random"], 300_000_000, 300_000_000)
expected["random"]["windows_10m_150s"] = windows(datasets["random"], 600_000_000, 150_000_000)
expected["seed_ten"]["windows_1h_1h"] = windows(datasets["seed_ten"], 3_600_000_000, 3_600_000_000)

expected["_comparisons"] = comparisons
expected["_sequential_tunings"] = sequential_tunings
expected["_srm"] = {c.pop("name"): c for c in srm_cases}
expected["_power"] = {c.pop("name"): c for c in power_cases}
expected["_pairs"] = {c.pop("name"): c for c in pair_cases}
# cluster: "cluster" reads each point's cluster key; "sample" clusters by
# sample id (events without one are clusters of their own).
expected["_clustered"] = {
    "reports": {name: {"dataset": ds, "cluster": key, "expected": analyze_clustered(datasets[ds], key)}
                for name, (ds, key) in clustered_reports.items()},
    "comparisons": {name: {"datasets": ds, "cluster": key, "expected": compare_clustered(datasets[ds[0]], [datasets[d] for d in ds[1:]], key)}
                    for name, (ds, key) in clustered_comparisons.items()},
}

with open("datasets.json", "w") as f:
    json.dump(datasets, f, separators=(",", ":"))
with open("expected.json", "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
print("numpy", np.__version__, "scipy", __import__("scipy").__version__)
