"""The numerical settings of one rung computation, with the defaults chosen by the convergence study.

Every value goes into ``entry.parameters`` of the written files, so a dataset says how it was made.
The defaults come from ``experiments/gpaw_ladder/convergence*.md``: on 7 varied materials, all settings
at once against an all-larger reference, they give median SC 0.979 (IPA) / 0.965 (RPA) at 32 core-seconds
per material of at most 4 sites; the first try (PW 300 eV, k-density 4.0) gave 0.915 / 0.917 at 18. The solver's
tolerances and buffer bands come from ``experiments/gpaw_ladder/speedup.md`` (2026-12-06): 0.50 of the core-seconds
of the settings before on 20 materials of 1-6 sites, the spectra within SC 0.995 of theirs and SC against the all-larger
reference within 0.001 on the 7 of the convergence study.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LadderSettings:
    """GPAW settings for the PBE ground state, the empty bands and the dielectric response."""

    #: Plane-wave cutoff of the ground state and the empty-band step (eV); 300 eV leaves oxides and
    #: fluorides at SC 0.86-0.93 against 400 eV.
    pw_cutoff_eV: float = 400.0
    #: k-point density (points per Å⁻¹, Γ-centred) of the self-consistent ground state.
    kpt_density_gs: float = 2.5
    #: k-point density of the non-self-consistent step the response integrates over (sharp sp3
    #: semiconductors such as Si converge slowest: SC 0.85 against 6.5).
    kpt_density_nscf: float = 5.0
    #: Empty bands: enough to reach this far above the VBM (free-electron estimate x factor);
    #: the entry records how far the converged bands really reach (``bands_reach_eV``).
    empty_bands_above_vbm_eV: float = 20.0
    empty_band_factor: float = 1.5
    min_empty_bands: int = 8
    #: Unconverged buffer bands on top (Davidson converges the top bands slowly).
    extra_bands: int = 4
    #: Local-field cutoff of the response (eV): the G-vectors of the RPA rung. The IPA rung is G = 0.
    response_cutoff_eV: float = 30.0
    #: ... raised where a small cell keeps fewer G-vectors than this (c-BN kept 1 at 30 eV: no local fields at all,
    #: RPA = IPA). 15 lifts the 24 shipped cells with 1-11 towards the basis most of the ladder has (median 27):
    #: against a 200 eV reference the six with 1-3 G-vectors rose from SC 0.84-0.89 to 0.91-0.99, those with 9 moved
    #: by -0.02 to +0.03 (experiments/gpaw_ladder/README.md, GPAW-computed). 1: no floor (the cutoff alone).
    response_min_G: int = 15
    #: GPAW's non-linear frequency grid: spacing at 0 and where it has doubled (eV). Interpolated
    #: onto the 2001-point 0-20 eV grid afterwards (cubic; 0.3 eV broadening keeps it smooth).
    domega0_eV: float = 0.05
    omega2_eV: float = 20.0
    #: Lorentzian broadening eta (eV), the paper's 300 meV.
    broadening_eV: float = 0.3
    #: The authors' lower gap filter, applied right after the ground state to save the rest.
    min_gap_eV: float = 0.5
    #: Eigenstate tolerance of the empty-band step (eV² per electron; GPAW's default 4e-8). Davidson then stops after
    #: about 4 SCF iterations instead of 10-14 at 1e-5: on 20 materials the spectra stay within SC 0.9995 of 1e-5's and
    #: the empty-band step takes 0.44 of its time (experiments/gpaw_ladder/speedup.md, with the buffer bands below).
    eigenstates_tol: float = 1e-1
    #: Davidson steps per SCF iteration of the empty-band step (GPAW's default 2; 3 saved no time in speedup.md).
    nscf_dav_niter: int = 2
    #: Atomic basis the wave functions start from ("" = GPAW's partial waves, ~4 orbitals an atom; "dzp" starts
    #: most empty bands from orbitals instead of random numbers, where gpaw-data has the element's file, but cost
    #: 8 % more in speedup.md: the LCAO start at every k-point costs more than the iterations it saves).
    basis: str = ""
    #: Buffer bands as a fraction of the converged ones (the larger of this and ``extra_bands``): with only 4, the top
    #: converged bands of a dense manifold converge slowest and set the iteration count (Rb2Te: 0.75 of the time
    #: with 15 %).
    extra_bands_frac: float = 0.3
    #: Ground-state convergence: density change (GPAW's default 1e-4) and eigenstate residual (eV² per electron,
    #: GPAW's default 4e-8). 1e-5 / 4e-8 before speedup.md; 1e-3 / 1e-5 (arm A13) took the whole material from 0.55 to
    #: 0.50 of the core-seconds before it (0.54 timed together on idle cores, A0x/A13x; ground state 13 -> 11
    #: iterations), spectra within SC 0.995 of it and SC
    #: against the all-larger reference within 0.001, gaps within 21 meV. A coarser ground-state k-grid (2.0, A14) saved
    #: 0.03 more but moved SC by up to 0.02 (KNa2Sb): kept at 2.5 for both rungs, used by the cheap IPA-only run.
    gs_density_tol: float = 1e-3
    gs_eigenstates_tol: float = 1e-5
    #: Empty bands of an IPA-only run (``level=ipa``). 15 eV cost 0.55 instead of 0.61 of the time but lost up to SC
    #: 0.084 (CaSiO3; stishovite 0.055, c-BN and KN3 0.02: the free-electron estimate reaches only 13-15 eV in some
    #: cells), so it stays at 20.
    ipa_empty_bands_above_vbm_eV: float = 20.0
    #: spglib tolerance (Å) for the standard primitive cell with atoms on their space group's exact
    #: positions (GPAW then finds the symmetry: fewer k-points); 0 keeps the structure as given.
    symprec: float = 0.1

    def as_dict(self) -> dict:
        """Plain dict (what the worker and ``entry.parameters`` take)."""
        return asdict(self)
