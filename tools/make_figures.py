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


@figure("04_lora_block.png")
def lora_block() -> Figure:
    """A LoRA layer: the frozen W beside the trainable low-rank path B A, scaled and added."""
    fig, ax = _canvas((9.5, 4.6))
    x_in = _box(ax, 1.0, 2.3, 1.3, 0.8, "input x\n(k features)", "white", 9)
    w = _box(ax, 4.4, 3.55, 2.6, 1.0, "W  (d x k)\nfrozen, maybe int8/NF4", COLORS["root"], 9)
    a = _box(ax, 3.5, 1.05, 1.7, 0.9, "A  (r x k)\nrandom init", COLORS["peft"], 9)
    b = _box(ax, 5.6, 1.05, 1.7, 0.9, "B  (d x r)\nzero init", COLORS["peft"], 9)
    scale = _box(ax, 7.3, 1.05, 1.0, 0.7, "x alpha/r", "white", 9)
    plus = _box(ax, 7.3, 2.3, 0.6, 0.6, "+", "white", 14, "bold")
    out = _box(ax, 8.8, 2.3, 1.0, 0.8, "output\n(d)", "white", 9)
    _arrow(ax, x_in["right"], w["left"])
    _arrow(ax, x_in["right"], a["left"])
    _arrow(ax, a["right"], b["left"])
    _arrow(ax, b["right"], scale["left"])
    _arrow(ax, scale["top"], plus["bottom"])
    _arrow(ax, w["right"], plus["top"])
    _arrow(ax, plus["right"], out["left"])
    ax.text(4.55, 0.2, "trainable: r (d + k) numbers instead of d k;  B = 0 at the start, so the layer "
            "begins as W exactly", ha="center", fontsize=8.5)
    ax.text(4.4, 4.35, "h = W x + (alpha / r) B A x", ha="center", fontsize=11, style="italic")
    return fig


def quant_levels() -> dict[str, list[float]]:
    """The values each 4-bit format can store in a block whose absmax is 1, read back from the library.

    NF4 and FP4: quantize a block that contains 1.0 and every value in [-1, 1] with bitsandbytes and
    collect what dequantizes (the code books' distinct values); int4: absmax rounding to 7 steps a side.
    """
    import torch
    from bitsandbytes import functional as bnbf

    values = torch.linspace(-1, 1, 64 * 512)
    block = values[torch.randperm(len(values), generator=torch.Generator().manual_seed(0))].reshape(-1, 64)
    block[:, 0] = 1.0
    levels = {}
    for quant_type in ("nf4", "fp4"):
        packed, state = bnbf.quantize_4bit(block.contiguous(), blocksize=64, quant_type=quant_type)
        back = bnbf.dequantize_4bit(packed, state, quant_type=quant_type)
        levels[quant_type.upper()] = sorted({round(v, 6) for v in back.flatten().tolist()})
    levels["int4 (absmax)"] = sorted({round(v, 6) for v in (torch.round(values * 7) / 7).tolist()})
    return levels


@figure("05_quant_levels.png")
def quant_level_lines() -> Figure:
    """NF4, FP4 and absmax int4 on one number line: where each format puts its 16 codes."""
    levels = quant_levels()
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_axes((0.13, 0.2, 0.84, 0.7))
    colors = {"NF4": "#2e75b6", "FP4": "#c55a11", "int4 (absmax)": "#548235"}
    for row, (name, vals) in enumerate(levels.items()):
        y = len(levels) - 1 - row
        ax.hlines(y, -1.05, 1.05, color="lightgray", linewidth=1)
        ax.plot(vals, [y] * len(vals), "|", markersize=22, markeredgewidth=2, color=colors[name])
        ax.text(1.08, y, f"{len(vals)} values", va="center", fontsize=9)
    ax.set_yticks(range(len(levels)), list(levels)[::-1])
    ax.set_xlim(-1.1, 1.3)
    ax.set_ylim(-0.6, len(levels) - 0.4)
    ax.set_xlabel("value / block absmax (read back from bitsandbytes' quantize_4bit for NF4 and FP4)")
    ax.set_title("NF4 packs its codes near 0, where most weights are; int4 spaces them evenly; FP4 is "
                 "roughly logarithmic (its two smallest codes sit at +-0.005)", fontsize=9.5)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return fig


def update_size_by_rank(ranks=(1, 2, 4, 8, 16, 32, 64, 128, 256), d=256, alpha=16.0, seeds=3):
    """Size of the first AdamW step's update (scale * B A) of a LoRA layer, for alpha/r and alpha/sqrt(r).

    A starts as peft initialises it (Kaiming uniform), B at zero; the loss is <G, delta W> for a fixed
    random G, so every rank sees the same gradient for the full matrix. Returns {rule: [norm per rank]}.
    """
    import math

    import torch

    sizes = {"alpha/r": [], "alpha/sqrt(r)": []}
    rules = (("alpha/r", lambda r: alpha / r), ("alpha/sqrt(r)", lambda r: alpha / math.sqrt(r)))
    for rule, scale_of in rules:
        for r in ranks:
            total = 0.0
            for seed in range(seeds):
                gen = torch.Generator().manual_seed(seed)
                grad_w = torch.randn(d, d, generator=gen)
                a = torch.empty(r, d)
                torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=gen)
                a = torch.nn.Parameter(a)
                b = torch.nn.Parameter(torch.zeros(d, r))
                opt = torch.optim.AdamW([a, b], lr=1e-3, weight_decay=0.0)
                (grad_w * (scale_of(r) * b @ a)).sum().backward()
                opt.step()
                total += (scale_of(r) * b @ a).norm().item()
            sizes[rule].append(total / seeds)
    return {"ranks": list(ranks), **sizes}


@figure("04_update_size_by_rank.png")
def update_size_plot() -> Figure:
    """rsLoRA's point in one picture: the first update shrinks with r under alpha/r, not alpha/sqrt(r)."""
    data = update_size_by_rank()
    fig = Figure(figsize=(7, 4))
    ax = fig.add_axes((0.15, 0.14, 0.81, 0.74))
    for rule, style in (("alpha/r", "o-"), ("alpha/sqrt(r)", "s-")):
        ax.plot(data["ranks"], data[rule], style, label=f"scale = {rule}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rank r")
    ax.set_ylabel("|scale * B A| after one AdamW step")
    ax.set_title("One AdamW step on a 256 x 256 LoRA layer (alpha = 16, same gradient)", fontsize=10)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
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
