"""VASP ``vasprun.xml`` (plain or compressed) read through pymatgen's :class:`~pymatgen.io.vasp.outputs.Vasprun`.

* ``LOPTICS = .TRUE.``: the frequency-dependent dielectric tensor of independent particles (the IPA rung);
  VASP 5 writes the density-density block and (from 5.4.4) the current-current one unlabelled, VASP 6
  labels them. ``vasp_kind=density`` (default, pymatgen's choice) or ``velocity`` picks one.
* ``ALGO = CHI`` (``LRPA = .TRUE.``) and GW runs label their blocks: the head of the microscopic tensor of
  independent particles (the IPA rung) and the *inverse* macroscopic tensor with local fields in the RPA
  (Hartree), which is inverted per frequency as a 3×3 matrix (the RPA rung).

The structure is the run's final one; the gaps are the PBE gaps of the run's own k-points (direct: the
smallest gap at one k-point; indirect: CBM - VBM). ``CSHIFT`` (VASP's complex shift, default 0.1 eV) is
the broadening. Spin-polarised runs (``ISPIN = 2``) are refused: the databases hold spin-unpolarised spectra.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .material import ImportedSpectra, ImportRefused

#: VASP's default CSHIFT (eV) when the run's parameters do not list it.
DEFAULT_CSHIFT_EV = 0.1
IPA_LABEL = "INDEPENDENT PARTICLE"
RPA_LABEL = "INVERSE MACROSCOPIC DIELECTRIC TENSOR (including local field effects in RPA"


def _tensor(block: tuple[list, list, list]) -> tuple[np.ndarray, np.ndarray]:
    """(energies [n], ε [n, 3, 3] complex) of one ``<dielectricfunction>`` block (xx yy zz xy yz zx columns)."""
    energies, real, imag = (np.asarray(x, dtype=np.float64) for x in block)
    if real.ndim != 2 or real.shape[1] != 6 or len(energies) != len(real):
        raise ImportRefused(f"its dielectric function has an unexpected shape {real.shape}")
    eps = real + 1j * imag
    t = np.empty((len(energies), 3, 3), dtype=complex)
    for k, (i, j) in enumerate(((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2))):
        t[:, i, j] = t[:, j, i] = eps[:, k]
    return energies, t


def _diagonal(t: np.ndarray) -> np.ndarray:
    return np.stack([t[:, 0, 0], t[:, 1, 1], t[:, 2, 2]])


def _gaps(vr) -> tuple[float | None, float | None]:
    """(direct, indirect) PBE gap of the run's k-points, by pymatgen's occupation rule (a band with occupation above
    1e-8 is occupied, as ``Vasprun.eigenvalue_band_properties``, whose Python loop took half the import time)."""
    from pymatgen.electronic_structure.core import Spin

    eig = getattr(vr, "eigenvalues", None)
    if not eig or Spin.up not in eig:
        return None, None
    e = np.asarray(eig[Spin.up])                       # [k, bands, (energy, occupation)]
    occupied = e[..., 1] > 1e-8
    if not occupied.any() or occupied.all():
        return None, None
    vb = np.where(occupied, e[..., 0], -np.inf).max(axis=1)
    cb = np.where(~occupied, e[..., 0], np.inf).min(axis=1)
    indirect = float(max(cb.min() - vb.max(), 0.0))
    return float(max((cb - vb).min(), indirect)), indirect


def read_vasprun(path: str | Path, vasp_kind: str = "density") -> ImportedSpectra:
    """The spectra, structure, gaps and broadening of one ``vasprun.xml``; :class:`ImportRefused` says why not."""
    from pymatgen.io.vasp.outputs import Vasprun

    if vasp_kind not in ("density", "velocity"):
        raise ValueError(f"vasp_kind={vasp_kind}: use density (density-density) or velocity (current-current)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns about POTCARs and unconverged ionic steps
            vr = Vasprun(str(path), parse_dos=False, parse_projected_eigen=False, parse_potcar_file=False)
    except Exception as err:  # pymatgen raises many kinds for a damaged file
        raise ImportRefused(f"pymatgen cannot read it ({type(err).__name__}: {str(err)[:120]})") from None
    if vr.parameters.get("ISPIN", 1) == 2:
        raise ImportRefused("spin-polarised run (ISPIN = 2): the databases hold spin-unpolarised spectra")
    data = vr.dielectric_data
    if not data:
        raise ImportRefused("no frequency-dependent dielectric function in it (run with LOPTICS = .TRUE. or ALGO = CHI)")
    rpa = None
    ipa_key = next((k for k in data if IPA_LABEL in k), None)
    rpa_key = next((k for k in data if k.startswith(RPA_LABEL)), None)
    if ipa_key is not None:
        energies, t = _tensor(data[ipa_key])
        kind = ipa_key
        if rpa_key is not None:
            e_rpa, inv = _tensor(data[rpa_key])
            if not np.allclose(e_rpa, energies):
                raise ImportRefused("its IPA and RPA blocks have different frequencies")
            try:
                rpa = _diagonal(np.linalg.inv(inv))   # the macroscopic ε is the inverse of the head of ε⁻¹
            except np.linalg.LinAlgError:
                raise ImportRefused("its inverse dielectric tensor is singular at some frequency") from None
    elif vasp_kind in data:
        energies, t = _tensor(data[vasp_kind])
        kind = vasp_kind
    else:
        raise ImportRefused(f"no {vasp_kind} dielectric function in it (it has: {', '.join(data)})")
    cshift = vr.parameters.get("CSHIFT", DEFAULT_CSHIFT_EV)
    direct, indirect = _gaps(vr)
    params = {"code": "VASP", "code_version": vr.vasp_version, "xc": vr.parameters.get("GGA") or "PE",
              "dielectric_block": kind, "CSHIFT": cshift, "NEDOS": vr.parameters.get("NEDOS"),
              "ENCUT": vr.parameters.get("ENCUT"), "NBANDS": vr.parameters.get("NBANDS"),
              "LSORBIT": bool(vr.parameters.get("LSORBIT", False)), "n_kpoints": len(vr.actual_kpoints),
              "gaps_from": "the run's own k-points"}
    return ImportedSpectra(source=str(path), structure=vr.final_structure, energies=energies, ipa=_diagonal(t),
                           rpa=rpa, broadening_eV=float(cshift), direct_gap=direct, indirect_gap=indirect,
                           parameters=params)
