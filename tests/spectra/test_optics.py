"""Derived optical properties against a Lorentz oscillator, whose Re/Im parts are known in closed form."""
import math

import numpy as np
import pytest
import torch

from optimate_pl.spectra import optics
from optimate_pl.spectra.grid import ENERGY_GRID as W


def lorentz(a, w0, gamma):
    """ε(ω) = 1 + A / (ω0² - ω² - iγω) on the grid: (Re, Im)."""
    den = (w0 ** 2 - W ** 2) ** 2 + (gamma * W) ** 2
    return 1 + a * (w0 ** 2 - W ** 2) / den, a * gamma * W / den


@pytest.mark.parametrize("a,w0,gamma", [(30, 5, 0.5), (60, 3, 1.0), (20, 8, 2.0), (10, 2.5, 0.2)])
def test_kramers_kronig_and_derived_spectra_match_the_lorentz_oscillator(a, w0, gamma):
    e1, e2 = lorentz(a, w0, gamma)
    d = optics.derive(torch.tensor(e2)[None])
    inside = W <= 15.0  # away from the window's edge at 20 eV, where the missing tail dominates
    peak = np.abs(e1 + 1j * e2).max()
    # Stated tolerance: 1 % of the peak |ε| up to 15 eV (measured: 0.006-0.11 %).
    assert np.abs(d["eps_real"][0].numpy() - e1)[inside].max() < 0.01 * peak
    n_exact = np.sqrt(e1 + 1j * e2)
    np.testing.assert_allclose(d["n"][0].numpy()[inside], n_exact.real[inside], atol=0.01 * np.abs(n_exact).max())
    np.testing.assert_allclose(d["k"][0].numpy()[inside], n_exact.imag[inside], atol=0.01 * np.abs(n_exact).max())
    # α = 4π k E / (h c) and R = |(N - 1)/(N + 1)|², from the exact N.
    alpha = 4 * math.pi * n_exact.imag * W / 1.23984198e-4
    np.testing.assert_allclose(d["alpha"][0].numpy()[inside], alpha[inside], atol=0.01 * alpha.max())
    r_exact = np.abs((n_exact - 1) / (n_exact + 1)) ** 2
    np.testing.assert_allclose(d["reflectivity"][0].numpy()[inside], r_exact[inside], atol=0.01)


@pytest.mark.parametrize("a,w0,gamma", [(30, 5, 0.5), (10, 2.5, 0.2), (60, 3, 1.0)])
def test_f_sum_rule_holds_up_to_the_tail_beyond_the_window(a, w0, gamma):
    """∫_0^∞ ω ε2 dω = (π/2) A for the oscillator; beyond 20 eV its tail carries ≈ Aγ/20 (ε2 ≈ Aγ/ω³)."""
    _, e2 = lorentz(a, w0, gamma)
    inside = optics.f_sum(torch.tensor(e2)[None]).item()
    assert inside == pytest.approx(math.pi / 2 * a - a * gamma / 20.0, rel=0.005)


def test_scalars_of_a_constructed_spectrum():
    # A spectrum with a sharp onset at 2.0 eV and its maximum at 4.0 eV.
    e2 = np.where(W >= 2.0, np.exp(-((W - 4.0) / 1.0) ** 2) * 3.0, 0.0)
    s = {k: v.item() for k, v in optics.scalars(torch.tensor(e2)[None]).items()}
    assert s["peak_energy_eV"] == pytest.approx(4.0) and s["peak_height"] == pytest.approx(3.0)
    assert s["onset_eV"] == pytest.approx(2.0)  # 3 exp(-4) = 0.055 >= 1 % of the peak
    assert s["qw"] == pytest.approx(np.trapezoid(e2, W), rel=1e-6)
    e1 = optics.eps_real(torch.tensor(e2)[None])[0].numpy()
    assert s["eps_static"] == pytest.approx(e1[0]) and s["eps_static"] > 1
    assert s["alpha_visible_mean"] > 0 and set(s) == set(optics.SCALARS)
    # Transparent below the onset: k (and α) vanish there up to the KK accuracy.
    k = optics.derive(torch.tensor(e2)[None])["k"][0].numpy()
    assert k[W < 1.5].max() < 1e-3
