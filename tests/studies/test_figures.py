"""The study figures answer a referee's questions on their face: what the quantiles are of, which material each
panel shows and how each model scored on it, line styles that differ without colour, seeds as a mean with a range."""
from __future__ import annotations

import pytest


def test_example_spectra_panels_say_what_they_show():
    """A referee's questions, answered on the figure: the quantity of the quantiles, each panel's material id (two
    KHSe panels once looked alike) and each model's SC, line styles that differ without colour."""
    import numpy as np

    from optimate_pl.studies import figures

    energy = np.linspace(0, 20, 2001)
    bump = lambda c: np.exp(-((energy - c) / 1.5) ** 2) * 3  # noqa: E731
    styles = {"RPA (DFT)": ("k", "-", 1.5), "TL (N=100)": ("C1", "--", 1.0), "DL (N=100)": ("C2", ":", 1.0)}
    panels = [{"quantile": q, "formula": "KHSe", "mat_id": f"agm00{i}", "baseline": 0.5 + q / 3,
               "sc": {"TL (N=100)": 0.8, "DL (N=100)": 0.7},
               "curves": {"RPA (DFT)": bump(4 + i % 3), "TL (N=100)": bump(4.5), "DL (N=100)": bump(5)}}
              for i, q in enumerate(np.arange(0.1, 1.0, 0.1))]
    fig = figures.example_spectra(energy, panels, styles)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("agm000" in t for t in texts) and any("agm008" in t for t in texts)
    assert any("SC[IPA;RPA] 0.53" in t and "TL (N=100) 0.80" in t and "DL (N=100) 0.70" in t for t in texts)
    assert "quantiles of SC[IPA;RPA]" in fig._suptitle.get_text()
    styles_seen = {line.get_linestyle() for ax in fig.axes for line in ax.lines}
    assert len(styles_seen) == 3  # solid, dashed, dotted
    for ax in fig.axes[:9]:  # the panel's range is the shown data's, not a half-empty axis
        assert ax.get_ylim()[1] < 3 * 1.4


def test_efficiency_draws_seeds_as_a_mean_with_its_range():
    import pandas as pd

    from optimate_pl.studies import figures

    table = pd.DataFrame([{"strategy": s, "train_size": n, "sc_median": sc, "mse_median": 0.1 + sc / 10}
                          for s, base in (("dl", 0.6), ("tl", 0.7)) for n in (100, 300)
                          for sc in (base + n / 3000, base + n / 3000 + 0.04)])  # two seeds a cell
    fig = figures.efficiency(table, {"sc": 0.5, "mse": 0.4})
    ax = fig.axes[0]
    tl = next(c for c in ax.containers if "Transfer" in c.get_label())
    x, y = tl.lines[0].get_data()
    assert list(x) == [100, 300] and y[0] == pytest.approx(0.7 + 100 / 3000 + 0.02)  # the mean of the two seeds
    assert "mean of 2 seeds, bar: range" in tl.get_label()
    assert len(tl.lines[2][0].get_segments()) == 2  # one range bar per size
    one = figures.efficiency(table.groupby(["strategy", "train_size"], as_index=False).first(), {"sc": 0.5, "mse": 0.4})
    assert all(c.get_label().endswith("(one seed)") for c in one.axes[0].containers)  # says it has no spread
