"""Quality gates: each compares the compressed model with the baseline measured in the same run.

A gate's status is `pass`, `fail` or `inconclusive`. Accuracy, perplexity and size are measured once and judged on
their value. The speedup is a ratio of timings, so it is judged on its 95% interval (bench.ratio_interval): `pass`
when the whole interval is at or above the threshold, `fail` when it is all below, `inconclusive` when it straddles
the threshold. A speedup timed while other processes used the CPU (bench.disturbance) passes no gate: a pass becomes
`inconclusive`, since such a load slows the eager torch baseline far more than a compiled runtime (a tiny model's
baseline measured 278 ms instead of about 1 ms beside a training run, and "passed" min_speedup 1000). An
inconclusive gate fails the run like a failed one (exit code 3): the speedup was not shown.
"""
from __future__ import annotations


EPSILON = 1e-9  # far below any metric's resolution (1 / samples), far above float rounding


def _judge_interval(interval: dict | None, value: float, threshold: float) -> str:
    if interval is None:
        return "pass" if value >= threshold else "fail"
    if interval["low"] >= threshold:
        return "pass"
    return "fail" if interval["high"] < threshold else "inconclusive"


def evaluate_gates(gates, comparison: dict, disturbed: str | None = None) -> list[dict]:
    """One entry per configured gate: name, threshold, measured value, status, passed. `disturbed`: why the
    timing cannot be trusted (bench.disturbance), or None."""
    checks = [
        ("max_accuracy_drop", gates.max_accuracy_drop, -comparison["metric_delta"], None),
        ("max_perplexity_increase", gates.max_perplexity_increase, comparison.get("perplexity_ratio", 1.0) - 1, None),
        ("min_speedup", gates.min_speedup, comparison["speedup"], comparison.get("speedup_interval")),
        ("max_size_ratio", gates.max_size_ratio, comparison["size_ratio"], None),
        # no higher-is-better harness metric to judge is a failure (nan), never a pass by default
        ("max_lm_eval_drop", gates.max_lm_eval_drop,
         (comparison.get("lm_eval_worst_drop") or {}).get("drop", float("nan")), None),
    ]
    out = []
    for name, threshold, value, interval in checks:
        if threshold is None:
            continue
        reason = None
        if name == "min_speedup":
            status = _judge_interval(interval, value, threshold)
            if status == "pass" and disturbed:
                status, reason = "inconclusive", f"timing disturbed: {disturbed}"
        else:  # 0.86 - 0.835 is 0.025000000000000022 in floats: a drop equal to the limit passes
            status = "pass" if value <= threshold + EPSILON else "fail"
        entry = {"name": name, "threshold": threshold, "value": value, "status": status, "passed": status == "pass"}
        if name == "max_lm_eval_drop" and comparison.get("lm_eval_worst_drop"):
            entry["metric"] = comparison["lm_eval_worst_drop"]["metric"]  # the metric that fell most
        if interval is not None and name == "min_speedup":
            entry["interval"] = [interval["low"], interval["high"]]
        if reason:
            entry["reason"] = reason
        out.append(entry)
    return out


def describe(gate: dict) -> str:
    """'min_speedup (measured 1.43, 95% interval 1.30-1.61, limit 1.5): inconclusive'."""
    interval = f", 95% interval {gate['interval'][0]:.4g}-{gate['interval'][1]:.4g}" if "interval" in gate else ""
    reason = f" ({gate['reason']})" if gate.get("reason") else ""
    return (f"{gate['name']} (measured {gate['value']:.4f}{interval}, limit {gate['threshold']}): "
            f"{status_of(gate)}{reason}")


def status_of(gate: dict) -> str:
    return gate.get("status") or ("pass" if gate["passed"] else "fail")
