import matplotlib
from matplotlib.figure import Figure

from course_utils import plots


def test_plots_return_figures_and_leave_style_alone():
    before = dict(matplotlib.rcParams)
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "eval_loss": 1.7}]
    figs = [
        plots.loss_curve(history),
        plots.bar_chart({"a": 1.0, "b": 2.0}, "units"),
        plots.memory_bars({"fp32": 538e6, "nf4": 166e6}),
        plots.before_after({"acc": 0.1}, {"acc": 0.2}),
        plots.histogram([0.1, -0.2, 0.3], bins=3, levels=[0.0]),
        plots.line_plot({"s": ([1, 2], [3, 4])}, "x", "y", logy=True),
        plots.shift_plot((3.0, 4.0), {"after": (2.5, 4.1)}, "x", "y"),
        plots.tradeoff({"a": {"x": 1.0, "before": 2.0, "after": 1.5, "low": 1.4, "high": 1.6}}, "MB", "NLL"),
    ]
    assert all(isinstance(f, Figure) for f in figs)
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
