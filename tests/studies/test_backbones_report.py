"""The backbones study's paired bootstrap interval."""
from __future__ import annotations

import numpy as np
import pandas as pd

from optimate_pl.studies.backbones import paired_interval


def test_paired_interval_of_a_constant_shift_is_that_shift():
    ref = pd.Series(np.linspace(0.5, 0.95, 65), index=[f"m{i}" for i in range(65)])
    diff, lo, hi = paired_interval(ref + 0.02, ref)
    assert diff == lo == hi == 0.02 or np.allclose([diff, lo, hi], 0.02)


def test_paired_interval_uses_only_shared_materials_and_brackets_the_difference():
    rng = np.random.default_rng(1)
    ids = [f"m{i}" for i in range(65)]
    ref = pd.Series(rng.uniform(0.3, 1.0, 65), index=ids)
    noisy = ref + rng.normal(0.01, 0.05, 65)
    diff, lo, hi = paired_interval(pd.concat([noisy, pd.Series([9.0], index=["only-here"])]), ref)
    assert lo < diff < hi and lo < 0.01 < hi
    assert diff == np.median(noisy) - np.median(ref)
    # Unpaired materials would widen nothing here: the extra material is ignored.
    assert paired_interval(noisy, ref) == (diff, lo, hi)


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
