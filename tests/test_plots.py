import matplotlib
import numpy as np
import pytest

from course_utils import plots


def _bars(ax):
    return [(round(r.get_x() + r.get_width() / 2, 6), r.get_height()) for r in ax.patches]


def _ticks(ax):
    return [t.get_text() for t in ax.get_xticklabels()]


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plots_draw_their_input_and_leave_style_alone():
    before = dict(matplotlib.rcParams)
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "eval_loss": 1.7}]
    fig = plots.loss_curve(history)
    ax = fig.axes[0]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()] == [([1, 2], [2.0, 1.5]),
                                                                                       ([2], [1.7])]
    assert _legend(ax) == ["train", "eval"] and (ax.get_xlabel(), ax.get_ylabel()) == ("optimizer step", "loss")

    ax = plots.bar_chart({"a": 1.0, "b": 2.0}, "units").axes[0]
    assert _bars(ax) == [(0, 1.0), (1, 2.0)] and _ticks(ax) == ["a", "b"] and ax.get_ylabel() == "units"
    assert [t.get_text() for t in ax.texts] == ["1.0", "2.0"]  # the value written on each bar

    ax = plots.before_after({"acc": 0.1, "f1": 0.3}, {"acc": 0.2, "f1": 0.25}).axes[0]
    assert _bars(ax) == [(-0.2, 0.1), (0.8, 0.3), (0.2, 0.2), (1.2, 0.25)]  # before left of each tick, after right
    assert _ticks(ax) == ["acc", "f1"] and _legend(ax) == ["before", "after"]

    values = [0.1, -0.2, 0.3, 0.25]
    ax = plots.histogram(values, bins=3, levels=[0.0, 0.2]).axes[0]
    counts, edges = np.histogram(values, bins=3)
    assert [r.get_height() for r in ax.patches] == list(counts)
    assert [r.get_x() for r in ax.patches] == pytest.approx(edges[:-1])
    assert [ln.get_xdata()[0] for ln in ax.get_lines()] == [0.0, 0.2]  # one vertical line per level

    ax = plots.line_plot({"s": ([1, 2], [3, 4]), "t": ([1, 2], [5, 6])}, "x", "y", logy=True).axes[0]
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.get_lines()] == [([1, 2], [3, 4]),
                                                                                       ([1, 2], [5, 6])]
    assert ax.get_yscale() == "log" and _legend(ax) == ["s", "t"] and (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")

    ax = plots.tradeoff({"a": {"x": 1.0, "before": 2.0, "after": 1.5, "low": 1.4, "high": 1.6}}, "MB", "NLL").axes[0]
    hollow = ax.collections[0]
    assert hollow.get_offsets().tolist() == [[1.0, 2.0]] and hollow.get_facecolors().size == 0
    point = next(ln for ln in ax.get_lines() if ln.get_marker() == "o")
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (1.0, 1.5)
    (bar,) = [c for c in ax.collections[1:] if hasattr(c, "get_segments")]
    assert np.allclose(bar.get_segments()[0], [[1.0, 1.4], [1.0, 1.6]])  # the interval, low to high
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("MB", "NLL") and _legend(ax) == ["a"]

    plots.shift_plot((3.0, 4.0), {"after": (2.5, 4.1)}, "x", "y")  # what it draws: the last test
    assert dict(matplotlib.rcParams) == before


def test_loss_curve_plots_what_was_logged():
    fig = plots.loss_curve([{"step": s, "loss": 3.0 - s / 10} for s in range(1, 6)])
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5]


def test_shift_plot_draws_an_arrow_from_the_start_to_each_end():
    fig = plots.shift_plot((3.0, 4.0), {"LoRA": (2.5, 4.1), "full": (2.2, 4.3)}, "task", "general")
    ax = fig.axes[0]
    arrows = [t for t in ax.texts if t.arrow_patch is not None]
    assert [a.xy for a in arrows] == [(2.5, 4.1), (2.2, 4.3)] and all(a.xyann == (3.0, 4.0) for a in arrows)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before", "LoRA", "full"]
    assert plots.shift_plot((3.0, 4.0), {"a": (2.0, 4.01)}, "x", "y", same_scale=True).axes[0].get_aspect() == 1.0


def test_source_markdown_shows_each_helper_whole_under_its_dotted_name():
    from course_utils.quality import mean_kl
    from course_utils.stats import paired_bootstrap

    text = plots.source_markdown(mean_kl, paired_bootstrap)
    assert text.startswith("`course_utils.quality.mean_kl`\n```python\ndef mean_kl(")
    assert "`course_utils.stats.paired_bootstrap`\n```python\ndef paired_bootstrap(" in text
    assert text.count("```python") == 2 and text.endswith("```")
    assert "return torch.stack(kls)" in text  # the whole body, not only the signature
