"""Charts for the HTML reports (matplotlib, no display needed), returned as PNG bytes to embed."""
from __future__ import annotations

import io


def metric_vs_latency_png(points: list[dict]) -> bytes:
    """points: {label, baseline: (latency_ms, metric), compressed: (latency_ms, metric)} per run.

    Each run draws its baseline (hollow) and compressed model (filled) joined by an arrow; the Pareto front of the
    compressed models (nothing both faster and more accurate) is a dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(points):
        color = colors[i % len(colors)]
        (bx, by), (cx, cy) = p["baseline"], p["compressed"]
        ax.scatter([bx], [by], facecolors="none", edgecolors=color, s=60)
        ax.scatter([cx], [cy], color=color, s=60, label=p["label"])
        ax.annotate("", xy=(cx, cy), xytext=(bx, by), arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.6})
    front = _pareto([p["compressed"] for p in points])
    if len(front) > 1:
        ax.plot(*zip(*front), linestyle="--", color="grey", linewidth=1, label="Pareto front")
    ax.set_xlabel("latency p50 (ms, lower is better)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs latency: baseline (hollow) -> compressed (filled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _pareto(xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by a faster-or-equal and more accurate one, by latency."""
    front, best = [], float("-inf")
    for x, y in sorted(xy, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front
