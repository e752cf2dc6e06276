"""Draw the course's diagrams with matplotlib into images/ (regenerate with this script).

    .venv/bin/python tools/make_figures.py            # every figure
    .venv/bin/python tools/make_figures.py 01 03      # only figures whose name starts with 01 or 03
    .venv/bin/python tools/make_figures.py --out DIR  # somewhere else (tests use a temporary folder)

Each figure is a function that returns a matplotlib Figure and is registered in ``FIGURES`` under
its file name; numbering follows the notebooks (``01_*.png`` is shown in notebook 01). Diagrams
only: plots of computed numbers are drawn by the notebooks themselves. Labels stay in English
(matplotlib's default font has no CJK glyphs). Uses the Agg canvas, so no display is needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
FIGURES: dict[str, Callable[[], Figure]] = {}

# One palette for the course's diagrams.
COLORS = {"full": "#f4b183", "peft": "#9dc3e6", "nonparam": "#a9d18e", "root": "#d9d9d9",
          "step": "#ffe699", "int8": "#9dc3e6", "fp16": "#f4b183"}


def figure(name: str):
    """Register a diagram under its file name."""
    def register(fn: Callable[[], Figure]) -> Callable[[], Figure]:
        FIGURES[name] = fn
        return fn
    return register


def _box(ax, x, y, w, h, text, color, fontsize=9, weight="normal"):
    """Draw a rounded box centred at (x, y) with text; return its edges for arrows."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.05",
                                facecolor=color, edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight, wrap=True)
    return {"top": (x, y + h / 2), "bottom": (x, y - h / 2), "left": (x - w / 2, y), "right": (x + w / 2, y)}


def _arrow(ax, start, end, **kw):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, linewidth=0.8,
                                 color="black", **kw))


def _canvas(figsize) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, figsize[0])
    ax.set_ylim(0, figsize[1])
    ax.axis("off")
    return fig, ax


@figure("01_finetuning_taxonomy.png")
def finetuning_taxonomy() -> Figure:
    """The map of notebook 01: full fine-tuning, parameter-efficient methods, non-parametric ones."""
    fig, ax = _canvas((12.5, 5.4))
    root = _box(ax, 6.25, 4.85, 3.4, 0.6, "Adapting a pretrained LLM", COLORS["root"], 11, "bold")
    families = [
        (1.35, "Full fine-tuning", "every weight trains\n(gradients + optimizer\nstates for all of them)",
         COLORS["full"], []),
        (5.75, "Parameter-efficient (PEFT)", "base frozen, a few new\nweights train",
         COLORS["peft"],
         [("Adapters", "bottleneck MLPs\ninside each block"),
          ("Prefix tuning", "trained key/value\nvectors per layer"),
          ("Prompt / P-tuning", "trained virtual\ntoken embeddings"),
          ("LoRA", "W + (alpha/r) B A,\nlow-rank update"),
          ("IA3", "learned scaling\nvectors")]),
        (11.0, "Non-parametric", "no weight changes:\nknowledge in the input",
         COLORS["nonparam"],
         [("In-context\nlearning", "examples in\nthe prompt"),
          ("RAG", "retrieved passages\nin the prompt")]),
    ]
    for x, title, sub, color, leaves in families:
        width = 2.5 if len(leaves) != 5 else 3.0
        head = _box(ax, x, 3.55, width, 0.95, f"{title}\n{sub}", color, 9)
        _arrow(ax, root["bottom"], head["top"])
        if not leaves:
            note = _box(ax, x, 1.7, 2.0, 1.1, "largest quality ceiling,\nlargest memory bill\n"
                        "(about 16 bytes per\nparameter with AdamW)", "white", 8)
            _arrow(ax, head["bottom"], note["top"])
            continue
        width = 1.3 if len(leaves) > 2 else 1.15
        span = (len(leaves) - 1) * (width + 0.12)
        for i, (name, what) in enumerate(leaves):
            lx = x - span / 2 + i * (width + 0.12)
            leaf = _box(ax, lx, 1.7, width, 1.1, f"{name}\n\n{what}", color, 7.5)
            _arrow(ax, head["bottom"], leaf["top"])
    ax.text(6.25, 0.55, "QLoRA = LoRA on a 4-bit (NF4) quantized, frozen base model  (notebooks 04-07)",
            ha="center", fontsize=9, style="italic")
    ax.text(6.25, 0.15, "Memory needed to train: full  >>  LoRA  >  QLoRA  >  non-parametric (none)",
            ha="center", fontsize=9)
    return fig


@figure("01_project_steps.png")
def project_steps() -> Figure:
    """The steps of a fine-tuning project, with the question each one answers."""
    steps = [("Data", "collect, clean,\nformat (chat\ntemplate), split"),
             ("Base model", "size vs memory,\nlicense, chat\nor base"),
             ("Method", "full, LoRA,\nQLoRA, or no\ntraining at all"),
             ("Train", "few steps first,\nwatch the loss,\nsave the adapter"),
             ("Evaluate", "held-out data,\nbefore vs after,\nsame prompts"),
             ("Serve", "merge or load\nthe adapter,\nquantize, deploy")]
    fig, ax = _canvas((12, 2.6))
    xs = [1.0 + i * 2.0 for i in range(len(steps))]
    boxes = [_box(ax, x, 1.5, 1.6, 1.7, f"{i + 1}. {name}\n\n{what}", COLORS["step"], 8.5)
             for i, (x, (name, what)) in enumerate(zip(xs, steps))]
    for a, b in zip(boxes, boxes[1:]):
        _arrow(ax, a["right"], b["left"])
    ax.annotate("", xy=(xs[0], 0.35), xytext=(xs[4], 0.35),
                arrowprops={"arrowstyle": "-|>", "linestyle": "--", "color": "gray",
                            "connectionstyle": "arc3,rad=0.0"})
    ax.text((xs[0] + xs[4]) / 2, 0.12, "evaluation sends you back to the data more often than to the model",
            ha="center", fontsize=8, color="gray")
    return fig


@figure("03_llm_int8_decomposition.png")
def llm_int8_decomposition() -> Figure:
    """LLM.int8(): outlier feature columns in 16-bit, everything else in int8, outputs summed."""
    fig, ax = _canvas((11.5, 4.9))
    rng_cols = 10
    outliers = {2, 7}
    x0, y0, cw, ch = 0.4, 1.75, 0.22, 1.4

    def matrix(x, y, cols, highlight, label, dim_other=False):
        for c in range(cols):
            is_out = c in highlight
            color = COLORS["fp16"] if is_out else COLORS["int8"]
            if dim_other and not is_out:
                color = "white"
            if dim_other is None and is_out:
                color = "white"
            ax.add_patch(Rectangle((x + c * cw, y), cw, ch, facecolor=color, edgecolor="black", lw=0.5))
        ax.text(x + cols * cw / 2, y + ch + 0.15, label, ha="center", fontsize=9)

    matrix(x0, y0, rng_cols, outliers, "X (tokens x features)\nfeatures with |x| >= 6: outliers")
    ax.text(x0 + rng_cols * cw + 0.35, y0 + ch / 2, "=", fontsize=16, va="center")
    x1 = x0 + rng_cols * cw + 0.8
    matrix(x1, y0 + 1.2, rng_cols, outliers, "", dim_other=True)
    ax.text(x1 + rng_cols * cw + 0.3, y0 + 1.2 + ch / 2, "16-bit matmul with the\nsame weight rows "
            "(< 0.1% of values)", fontsize=8, va="center", ha="left")
    matrix(x1, y0 - 1.2, rng_cols, outliers, "", dim_other=None)
    ax.text(x1 + rng_cols * cw + 0.3, y0 - 1.2 + ch / 2, "int8 matmul: absmax per token row\n"
            "x absmax per weight row, int32 accumulate,\nrescale by sx * sw / 127^2", fontsize=8,
            va="center", ha="left")
    ax.text(x1 + rng_cols * cw / 2, y0 + ch / 2 - 0.05, "+", fontsize=16, ha="center", va="center")
    xr = 9.3
    _box(ax, xr + 0.9, y0 + ch / 2, 2.0, 1.3, "Y = Y_fp16 + Y_int8\n\nOutliers never set\nthe int8 scale",
         "white", 9)
    _arrow(ax, (xr - 0.5, y0 + 1.2 + ch / 2), (xr - 0.1, y0 + ch / 2 + 0.3))
    _arrow(ax, (xr - 0.5, y0 - 1.2 + ch / 2), (xr - 0.1, y0 + ch / 2 - 0.3))
    ax.add_patch(Rectangle((0.4, 0.1), 0.25, 0.2, facecolor=COLORS["fp16"], edgecolor="black", lw=0.5))
    ax.text(0.75, 0.2, "outlier feature column (kept in 16-bit)", fontsize=8, va="center")
    ax.add_patch(Rectangle((5.2, 0.1), 0.25, 0.2, facecolor=COLORS["int8"], edgecolor="black", lw=0.5))
    ax.text(5.55, 0.2, "regular column (int8)", fontsize=8, va="center")
    return fig


def render(name: str, out_dir: Path = IMAGES, dpi: int = 120) -> Path:
    """Draw one registered figure into ``out_dir`` and return its path."""
    fig = FIGURES[name]()
    FigureCanvasAgg(fig)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefixes", nargs="*", help="only figures whose file name starts with one of these")
    ap.add_argument("--out", type=Path, default=IMAGES, help="output folder (default: images/)")
    args = ap.parse_args(argv)
    names = [n for n in FIGURES if not args.prefixes or n.startswith(tuple(args.prefixes))]
    if not names:
        print(f"no figure matches {args.prefixes}; figures: {', '.join(FIGURES)}", file=sys.stderr)
        return 1
    for name in names:
        path = render(name, args.out)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
