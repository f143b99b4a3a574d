"""Spectra onto the grid: Lorentzian broadening checked against the closed form of Lorentzian lines."""
import numpy as np
import pytest

from optimate_pl.spectra.grid import ENERGY_GRID
from optimate_pl.spectra.resample import GridError, lorentzian_broaden, max_step, onto_grid


def oscillator(w, w0, eta):
    """ε - 1 of one Lorentz oscillator at ``w0`` broadened by a complex shift ``eta`` (resonant + antiresonant)."""
    return 1 / (w0 - w - 1j * eta) + 1 / (w0 + w + 1j * eta)


@pytest.mark.parametrize("w0", [0.4, 5.0, 12.0])
def test_lorentzians_add_their_widths(w0):
    # A line broadened by 0.1 eV, broadened by a further 0.2 eV, is the line broadened by 0.3 eV: Im and Re.
    e = np.linspace(0.0, 30.0, 3001)
    grid, im = lorentzian_broaden(e, oscillator(e, w0, 0.1).imag, 0.2, parity="odd")
    _, re = lorentzian_broaden(e, oscillator(e, w0, 0.1).real, 0.2, parity="even")
    want = oscillator(grid, w0, 0.3)
    inside = grid < 15
    assert np.abs(im - want.imag)[inside].max() < 1e-4 * np.abs(want.imag).max()
    assert np.abs(re - want.real)[inside].max() < 1e-3 * np.abs(want.real).max()
    # Without the odd continuation below 0, the low-energy line would lose the weight of its mirror image.
    _, wrong = lorentzian_broaden(e, oscillator(e, 0.4, 0.1).imag, 0.2, parity="even")
    if w0 == 0.4:
        assert np.abs(wrong - want.imag)[inside].max() > 0.05 * np.abs(want.imag).max()


def test_sharpening_is_refused():
    with pytest.raises(GridError, match="cannot sharpen"):
        lorentzian_broaden(np.linspace(0, 20, 100), np.ones(100), -0.1)


def test_grid_coverage():
    e = np.linspace(0.0, 25.0, 2501)
    values, note = onto_grid(e, np.sin(e))
    assert note is None and values.shape == (2001,)
    assert np.allclose(values, np.sin(ENERGY_GRID), atol=2e-5)
    with pytest.raises(GridError, match="reaches only 7.50 eV"):
        onto_grid(np.linspace(0, 7.5, 251), np.ones(251))
    with pytest.raises(GridError, match="starts at 7.50 eV"):
        onto_grid(np.linspace(7.5, 25, 300), np.ones(300))
    filled, note = onto_grid(np.linspace(0, 7.5, 251), np.ones(251), beyond_grid="zero")
    assert "reaches only 7.50 eV" in note
    assert filled[ENERGY_GRID <= 7.5].min() == 1.0 and filled[ENERGY_GRID > 7.51].max() == 0.0
    assert max_step(np.array([0.0, 0.1, 0.3, 19.0, 25.0])) == pytest.approx(18.7)
