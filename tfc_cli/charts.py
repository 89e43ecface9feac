"""Charts for the HTML reports (matplotlib, no display needed), returned as PNG bytes to embed."""
from __future__ import annotations

import io


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(*args, **kwargs)


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def metric_vs_latency_png(points: list[dict]) -> bytes:
    """points: {label, baseline: (latency_ms, metric), compressed: (latency_ms, metric)} per run.

    Each run draws its baseline (hollow) and compressed model (filled) joined by an arrow; the Pareto front of the
    compressed models (nothing both faster and more accurate) is a dashed line.
    """
    plt, fig, ax = _figure(figsize=(7, 4.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(points):
        color = colors[i % len(colors)]
        (bx, by), (cx, cy) = p["baseline"], p["compressed"]
        ax.scatter([bx], [by], facecolors="none", edgecolors=color, s=60)
        # a run name is text, not mathtext: "$A_$B" would otherwise be parsed as a formula and fail
        ax.scatter([cx], [cy], color=color, s=60, label=p["label"].replace("$", r"\$"))
        ax.annotate("", xy=(cx, cy), xytext=(bx, by), arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.6})
    front = _pareto([p["compressed"] for p in points])
    if len(front) > 1:
        ax.plot(*zip(*front), linestyle="--", color="grey", linewidth=1, label="Pareto front")
    ax.set_xlabel("latency p50 (ms, lower is better)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs latency: baseline (hollow) -> compressed (filled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(plt, fig)


def layers_png(layers: list[dict]) -> bytes:
    """Kept attention heads and FFN units per layer of a pruned model (tfc.json changes.pruning.layers:
    {heads, heads_total, ffn, ffn_total} per layer); a removed sublayer shows as 0 kept."""
    plt, fig, axes = _figure(1, 2, figsize=(9, 3.5), dpi=110)
    index = list(range(1, len(layers) + 1))
    for ax, kept, total, title in ((axes[0], "heads", "heads_total", "attention heads kept"),
                                   (axes[1], "ffn", "ffn_total", "FFN units kept")):
        ax.bar(index, [layer[total] for layer in layers], color="#ddd", label="original")
        ax.bar(index, [layer[kept] for layer in layers], color="#1f77b4", label="kept")
        ax.set_title(title)
        ax.set_xlabel("layer")
        ax.set_xticks(index)
    axes[0].legend(fontsize=8)
    return _png(plt, fig)


def _pareto(xy: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by a faster-or-equal and more accurate one, by latency."""
    front, best = [], float("-inf")
    for x, y in sorted(xy, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front
