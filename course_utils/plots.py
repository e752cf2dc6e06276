"""Plot helpers: each returns a matplotlib Figure and changes no global style.

Notebooks display the returned figure; the library never calls ``plt.show()`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure


def _figure(figsize=(6, 3.5)) -> tuple[Figure, object]:
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def loss_curve(log_history: Sequence[Mapping], title: str = "Training loss") -> Figure:
    """Plot training (and, if logged, eval) loss against step from a Trainer's ``log_history``."""
    fig, ax = _figure()
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), marker=".", label="train")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval")
    ax.set(xlabel="optimizer step", ylabel="loss", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def bar_chart(values: Mapping[str, float], ylabel: str, title: str = "",
              fmt: str = "{:.1f}") -> Figure:
    """Plot labelled bars with their values written on top (memory, accuracy, counts)."""
    fig, ax = _figure()
    labels, heights = list(values), list(values.values())
    bars = ax.bar(labels, heights, color="tab:blue")
    ax.bar_label(bars, labels=[fmt.format(h) for h in heights], padding=2)
    ax.set(ylabel=ylabel, title=title)
    ax.margins(y=0.15)
    return fig


def before_after(before: Mapping[str, float], after: Mapping[str, float],
                 title: str = "Before and after training") -> Figure:
    """Plot metric pairs side by side (for example accuracy before and after fine-tuning)."""
    fig, ax = _figure()
    names = list(before)
    xs = range(len(names))
    b = ax.bar([x - 0.2 for x in xs], [before[n] for n in names], 0.4, label="before")
    a = ax.bar([x + 0.2 for x in xs], [after[n] for n in names], 0.4, label="after")
    ax.bar_label(b, fmt="%.2f")
    ax.bar_label(a, fmt="%.2f")
    ax.set_xticks(list(xs), names)
    ax.set(title=title)
    ax.margins(y=0.15)
    ax.legend()
    return fig


def histogram(values, bins: int = 100, levels: Sequence[float] | None = None,
              title: str = "", xlabel: str = "value") -> Figure:
    """Plot a histogram, optionally with vertical lines at quantization levels."""
    fig, ax = _figure()
    ax.hist(values, bins=bins, color="tab:gray")
    for lv in levels or []:
        ax.axvline(lv, color="tab:red", lw=0.8, alpha=0.7)
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    return fig


def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
              ylabel: str, title: str = "", logy: bool = False) -> Figure:
    """Plot named (x, y) series on one axis."""
    fig, ax = _figure()
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def shift_plot(before: tuple[float, float], after: Mapping[str, tuple[float, float]], xlabel: str,
               ylabel: str, title: str = "", same_scale: bool = False) -> Figure:
    """Plot one starting point and an arrow from it to each labelled end point (x, y).

    ``same_scale``: one unit is as long on both axes, so a move along y can be compared by eye with
    a move along x (autoscaling would stretch a tiny change to fill the axis).

    Taught in lesson 08, section «3 · Full fine-tuning vs LoRA: what low rank costs».
    """
    fig, ax = _figure(figsize=(6.5, 4.5))
    if same_scale:
        ax.set_aspect("equal", adjustable="datalim")
    ax.scatter(*before, color="black", zorder=3, label="before")
    for (label, (x, y)), color in zip(after.items(), ("tab:blue", "tab:red", "tab:green", "tab:orange")):
        ax.annotate("", xy=(x, y), xytext=before, arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
        ax.scatter([x], [y], color=color, zorder=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def tradeoff(points: Mapping[str, Mapping[str, float]], xlabel: str, ylabel: str, title: str = "") -> Figure:
    """Plot what each option costs (x) against how it scores (y), before and after training.

    ``points`` maps a name to ``x``, ``before``, ``after`` and the ``low``/``high`` ends of an interval
    around ``after``: a hollow marker before, a filled one after with its interval, an arrow between.

    Taught in lesson 08, section «4 · LoRA, int8-LoRA or QLoRA: what the 4 bits cost».
    """
    fig, ax = _figure((6.5, 4))
    for k, (name, pt) in enumerate(points.items()):
        color = f"C{k}"
        ax.scatter([pt["x"]], [pt["before"]], facecolors="none", edgecolors=color, s=50)
        ax.errorbar([pt["x"]], [pt["after"]], yerr=[[pt["after"] - pt["low"]], [pt["high"] - pt["after"]]],
                    fmt="o", color=color, capsize=4, label=name)
        ax.annotate("", xy=(pt["x"], pt["after"]), xytext=(pt["x"], pt["before"]),
                    arrowprops={"arrowstyle": "->", "color": color, "alpha": 0.5})
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.margins(x=0.15, y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(title="hollow: before training", fontsize="small")
    return fig


def show_diagram(name: str, width: int = 800):
    """Display one of the course's diagrams from images/ (drawn by tools/make_figures.py).

    Found from the package's location, so it works from any working directory (JupyterLab, Colab).
    """
    from pathlib import Path

    from IPython.display import Image, display

    path = Path(__file__).resolve().parents[1] / "images" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python tools/make_figures.py` in the course folder")
    display(Image(filename=path, width=width))


def source_markdown(*helpers) -> str:
    """Return the source of ``helpers`` as Markdown: each one's dotted name, then its code."""
    import inspect

    return "\n\n".join(f"`{h.__module__}.{h.__qualname__}`\n```python\n{inspect.getsource(h).rstrip()}\n```"
                       for h in helpers)


def show_source(*helpers) -> None:
    """Display the code of course helpers that a lesson teaches, in the section that first uses them.

    The course writes a helper in front of the learner the first time (d2l's and rasbt's rule); where a
    lesson's helper lives in ``course_utils`` (its unit tests and later lessons need it), the lesson shows
    its code this way, read from the installed package, so the page and the code cannot drift apart.
    """
    from IPython.display import Markdown, display

    display(Markdown(source_markdown(*helpers)))
