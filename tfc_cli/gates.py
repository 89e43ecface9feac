"""Quality gates: each compares the compressed model with the baseline measured in the same run."""
from __future__ import annotations


def evaluate_gates(gates, comparison: dict) -> list[dict]:
    """One entry per configured gate: name, threshold, measured value, passed."""
    checks = [
        ("max_accuracy_drop", gates.max_accuracy_drop, -comparison["metric_delta"], lambda v, t: v <= t),
        ("max_perplexity_increase", gates.max_perplexity_increase, comparison.get("perplexity_ratio", 1.0) - 1,
         lambda v, t: v <= t),
        ("min_speedup", gates.min_speedup, comparison["speedup"], lambda v, t: v >= t),
        ("max_size_ratio", gates.max_size_ratio, comparison["size_ratio"], lambda v, t: v <= t),
    ]
    return [{"name": name, "threshold": threshold, "value": value, "passed": bool(ok(value, threshold))}
            for name, threshold, value, ok in checks if threshold is not None]
