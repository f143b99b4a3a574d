"""The paper's published test-set medians on the real data (docs/domain.md §8), to put beside ours."""
from __future__ import annotations

#: Training-set size -> median SC and MSE of DL and TL on the test set (the paper's Fig. 3).
EFFICIENCY = {
    100: {"dl": {"sc": 0.716, "mse": 0.394}, "tl": {"sc": 0.834, "mse": 0.133}},
    300: {"dl": {"sc": 0.754, "mse": 0.262}, "tl": {"sc": 0.863, "mse": 0.101}},
    1000: {"dl": {"sc": 0.827, "mse": 0.160}, "tl": {"sc": 0.881, "mse": 0.077}},
    3000: {"dl": {"sc": 0.874, "mse": 0.075}, "tl": {"sc": 0.893, "mse": 0.059}},
    4610: {"dl": {"sc": 0.900, "mse": 0.052}, "tl": {"sc": 0.893, "mse": 0.061}},
}
#: The IPA baseline SC[IPA;RPA] and MSE over the test set.
IPA_BASELINE = {"sc": 0.690, "mse": 0.469}
#: TL on cells of at most N sites: training-set size, median SC, median MSE.
SMALL_CELLS = {2: {"n_train": 74, "sc": 0.791, "mse": 0.225}, 3: {"n_train": 343, "sc": 0.848, "mse": 0.117},
               4: {"n_train": 1470, "sc": 0.870, "mse": 0.086}, 5: {"n_train": 2191, "sc": 0.879, "mse": 0.079},
               6: {"n_train": 2699, "sc": 0.884, "mse": 0.075}}
#: The SC[RPA;IPA] predictor's mean and median absolute error.
SC_PREDICTOR = {"mean_abs_error": 0.026, "median_abs_error": 0.018}
