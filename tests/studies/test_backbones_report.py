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

