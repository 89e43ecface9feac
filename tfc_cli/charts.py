"""Charts for the HTML reports (matplotlib, no display needed), as SVG text to inline: it scales, stays sharp
when zoomed or printed, and its labels are text a browser can search."""
from __future__ import annotations

import io


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text (the browser's font), not glyph outlines
    return plt, *plt.subplots(*args, **kwargs)


def _svg(plt, fig) -> str:
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]  # inline in HTML: no XML prologue or doctype


def metric_vs_latency_svg(points: list[dict], metric: str = "accuracy", latency: str = "latency p50 (ms)",
                          higher_is_better: bool = True, thresholds: dict | None = None) -> str:
    """points: {label, baseline: (latency_ms, metric), compressed: (latency_ms, metric)} per run.

    Each run draws its baseline (hollow) and compressed model (filled) joined by an arrow; the Pareto front of the
    compressed models (nothing both faster and better) is a dashed line. `thresholds` draws a single run's gates:
    {"metric": the worst metric the gates allow, "latency": the slowest latency they allow}. Latency starts at 0;
    the metric axis is zoomed to the points, and says so.
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
    front = _pareto([p["compressed"] for p in points], higher_is_better)
    if len(front) > 1:
        ax.plot(*zip(*front), linestyle="--", color="grey", linewidth=1, label="Pareto front")
    for key, value in (thresholds or {}).items():
        if value is None:
            continue
        line = ax.axhline if key == "metric" else ax.axvline
        line(value, color="#b00", linestyle=":", linewidth=1.2,
             label=f"gate: {metric} {'>=' if higher_is_better else '<='} {value:.4g}" if key == "metric"
             else f"gate: latency <= {value:.3g} ms")
    ax.set_xlim(left=0)
    ax.set_xlabel(f"{latency}, lower is better; axis from 0")
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better; axis zoomed, not from 0)")
    ax.set_title(f"{metric} vs latency: baseline (hollow) -> compressed (filled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _svg(plt, fig)


def layers_svg(layers: list[dict]) -> str:
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
    return _svg(plt, fig)


def _pareto(xy: list[tuple[float, float]], higher_is_better: bool = True) -> list[tuple[float, float]]:
    """Points not dominated by a faster-or-equal and better one, by latency."""
    sign = 1 if higher_is_better else -1
    front, best = [], float("-inf")
    for x, y in sorted(xy, key=lambda p: (p[0], -sign * p[1])):
        if sign * y > best:
            front.append((x, y))
            best = sign * y
    return front
