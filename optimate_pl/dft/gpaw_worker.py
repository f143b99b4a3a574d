"""One material's rungs of the ladder with GPAW: PBE ground state, empty bands, dielectric function.

Runs as a script under a Python that has GPAW (Debian's ``/usr/bin/python3`` with ``apt-get
install gpaw gpaw-data``); it imports nothing from optimate_pl, so that interpreter needs only
numpy, ASE and GPAW. Usage::

    python3 gpaw_worker.py task.json result.npz

``task.json`` holds ``numbers``, ``cell`` (Å), ``positions`` (Cartesian Å), ``settings`` (see
``optimate_pl.dft.settings.LadderSettings``) and ``level`` (``ipa`` or ``both``). The result holds
the response on GPAW's own frequency grid (the caller interpolates onto the 2001-point grid), per
Cartesian direction, without local fields (the IPA: the head of the dielectric matrix) and, for
``both``, with them (the RPA), plus the PBE gaps and the time of each stage. A material that cannot
be computed as an insulator exits with code 3 and one line on stderr saying why.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time

import numpy as np

# Exit code for "this material is not for the ladder" (metal, odd electron count, gap filter):
# the caller records the reason instead of treating it as a crash.
NOT_AN_INSULATOR = 3


def _fail(reason: str) -> None:
    print(reason, file=sys.stderr, flush=True)
    sys.exit(NOT_AN_INSULATOR)


def _gaps(calc) -> tuple[float, float, float]:
    """(indirect, direct, VBM) in eV from the occupied/empty bands of a fixed-occupation run."""
    nocc = int(round(calc.get_number_of_electrons())) // 2  # spin-paired, fixed occupations
    eps = np.array([calc.get_eigenvalues(kpt=k) for k in range(len(calc.get_ibz_k_points()))])
    vbm = eps[:, nocc - 1].max()
    cbm = eps[:, nocc].min()
    direct = (eps[:, nocc] - eps[:, nocc - 1]).min()
    return float(cbm - vbm), float(direct), float(vbm)


def _standardise(atoms, symprec: float):
    """The spglib standard primitive cell, atoms on the exact positions of their space group.

    Relaxed cells carry ~1e-5 Å noise that hides their space group from GPAW (zincblende AlAs: 6
    symmetry operations instead of 24), and a non-standard cell (a rhombohedral lattice given by
    unequal vectors) gets a k-point grid that breaks the symmetry (226 instead of ~40 irreducible
    k-points for a 2-site P): both cost several times the k-points. The trace of ε does not depend on
    the cell's orientation; the entry keeps the cell it was computed in, consistent with xx/yy/zz.
    """
    import spglib
    from ase import Atoms

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    std = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    if std is None or len(std[2]) != len(atoms):  # spglib failed, or the input was not primitive
        return atoms
    lattice, positions, numbers = std
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)


def _valence(atoms) -> list[int]:
    """Valence electrons per atom from the PAW setups GPAW will use."""
    from gpaw.setup_data import SetupData

    cache: dict[str, int] = {}
    for sym in atoms.get_chemical_symbols():
        if sym not in cache:
            cache[sym] = int(round(SetupData(sym, "PBE", "paw").Nv))
    return [cache[s] for s in atoms.get_chemical_symbols()]


def _empty_bands(volume: float, energy: float) -> int:
    """Free-electron count of states per spin within ``energy`` eV of a band bottom, in ``volume`` Å³.

    Used to size the empty-band count before the non-self-consistent step; the step then reports
    how far above the VBM the converged bands really reach (``bands_reach_eV``).
    """
    hbar2_2m = 3.80998  # eV Å²
    kf = math.sqrt(energy / hbar2_2m)
    return int(math.ceil(volume * kf**3 / (6 * math.pi**2)))


def local_field_cutoff(cell: np.ndarray, cutoff_eV: float, min_G: int) -> float:
    """The local-field cutoff (eV) that keeps at least ``min_G`` G-vectors (|G|²/2 <= cutoff, q -> 0) in the cell
    ``cell`` (rows: lattice vectors in Å), and never less than ``cutoff_eV``.

    A fixed cutoff keeps few G-vectors in a small cell with short lattice vectors (1 for c-BN at 30 eV: no local
    fields at all, the RPA rung equal to the IPA one); the floor makes every cell's basis at least ``min_G``.
    Shells of equal |G| come whole, so the count can exceed ``min_G``."""
    if min_G <= 1:
        return float(cutoff_eV)
    hartree, bohr = 27.211386245988, 0.529177210903
    recip = 2 * np.pi * np.linalg.inv(np.asarray(cell, dtype=float)).T * bohr  # rows: reciprocal vectors, 1/bohr
    n = 8
    grid = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    energies = np.sort(0.5 * np.sum((grid @ recip) ** 2, axis=1)) * hartree  # eV, |G|²/2 of each G
    return float(max(cutoff_eV, energies[min_G - 1] * (1 + 1e-6)))


def _log(workdir: str, stage: str) -> str:
    """Each stage's own GPAW text log (one shared file was overwritten by each stage: the SCF tables were lost)."""
    return os.path.join(workdir, f"{stage}.txt")


def _tail(path: str, chars: int) -> str:
    """The last ``chars`` characters of a log, headed by its name; empty if the stage never ran."""
    if not os.path.exists(path):
        return ""
    with open(path) as fh:
        return f"==> {os.path.basename(path)} <==\n" + fh.read()[-chars:]


def _basis(atoms, name: str) -> dict:
    """GPAW's ``basis`` for the initial wave functions: ``name`` (e.g. ``dzp``) for each element whose basis
    file is installed, GPAW's default (partial waves) for the rest; ``""`` keeps the default for all.

    dzp starts most empty bands from atomic orbitals instead of random numbers (partial waves give ~4 per
    atom), which saves the first Davidson iterations; elements without the file (e.g. most lanthanides in
    gpaw-data) keep partial waves rather than failing.
    """
    if not name:
        return {}
    from gpaw import setup_paths

    have = {}
    for sym in set(atoms.get_chemical_symbols()):
        if any(os.path.exists(os.path.join(p, f"{sym}.{name}.basis{gz}")) for p in setup_paths for gz in ("", ".gz")):
            have[sym] = name
    return have


def compute(task: dict, workdir: str) -> dict:
    """Run the ground state, the empty-band step and the response; return arrays and timings."""
    from ase import Atoms
    from gpaw import GPAW, PW
    from ase.units import Hartree

    s = task["settings"]
    atoms = Atoms(numbers=task["numbers"], cell=task["cell"], positions=task["positions"], pbc=True)
    if s["symprec"]:
        atoms = _standardise(atoms, s["symprec"])
    # CPU seconds of this (single-threaded) process per stage: the cost stays honest when other
    # work shares the cores, which wall time would not.
    times: dict[str, float] = {}

    nelec = sum(_valence(atoms))
    if nelec % 2:
        _fail(f"odd number of valence electrons ({nelec}): not a spin-paired insulator")
    nocc = nelec // 2
    t0 = time.process_time()
    # fixed-uniform: insulators without a Fermi-level search (0.01 eV Fermi-Dirac smearing fails for
    # large-gap solids such as Xe). The lowest empty band is converged too: the gap check reads it.
    basis = _basis(atoms, s["basis"])
    gs = GPAW(mode=PW(s["pw_cutoff_eV"]), xc="PBE", kpts={"density": s["kpt_density_gs"], "gamma": True},
              nbands=nocc + 4, occupations={"name": "fixed-uniform"}, basis=basis,
              convergence={"density": s["gs_density_tol"], "eigenstates": s["gs_eigenstates_tol"], "bands": nocc + 1},
              txt=_log(workdir, "gs"))
    atoms.calc = gs
    atoms.get_potential_energy()
    times["ground_state"] = time.process_time() - t0
    gap_ind, gap_dir, _ = _gaps(gs)
    if gap_ind < s["min_gap_eV"]:
        _fail(f"PBE gap {gap_ind:.3f} eV < {s['min_gap_eV']} eV on the ground-state grid (metal or small gap)")

    t0 = time.process_time()
    # An IPA-only run has its own band reach (the same 20 eV by default: 15 lost up to SC 0.084, speedup.md).
    reach = s["empty_bands_above_vbm_eV"] if task["level"] == "both" else s["ipa_empty_bands_above_vbm_eV"]
    nconv = nocc + max(s["min_empty_bands"], int(math.ceil(
        s["empty_band_factor"] * _empty_bands(atoms.get_volume(), reach))))
    nbands = nconv + max(s["extra_bands"], int(math.ceil(s["extra_bands_frac"] * nconv)))
    nscf = gs.fixed_density(nbands=nbands, kpts={"density": s["kpt_density_nscf"], "gamma": True},
                            convergence={"bands": nconv, "eigenstates": s.get("eigenstates_tol", 4e-8)},
                            eigensolver={"name": "dav", "niter": int(s["nscf_dav_niter"])},
                            basis=basis, txt=_log(workdir, "nscf"))
    times["empty_bands"] = time.process_time() - t0
    iterations = {"ground_state": int(gs.scf.niter), "empty_bands": int(nscf.scf.niter)}
    gap_ind, gap_dir, vbm = _gaps(nscf)
    # The readers' filter reads this (dense-grid) gap, which can lie below the ground state's: stop before the
    # response rather than compute a spectrum they would drop.
    if gap_ind < s["min_gap_eV"]:
        _fail(f"PBE gap {gap_ind:.3f} eV < {s['min_gap_eV']} eV on the dense k-grid of the empty-band step")
    eps_top = min(nscf.get_eigenvalues(kpt=k)[nconv - 1] for k in range(len(nscf.get_ibz_k_points())))
    nkpts_ibz = len(nscf.get_ibz_k_points())
    t0 = time.process_time()
    gpw = os.path.join(workdir, "nscf.gpw")
    nscf.write(gpw, "all")
    times["write"] = time.process_time() - t0

    t0 = time.process_time()
    # IPA alone needs only the head of chi0: a response cutoff that keeps G = 0 alone.
    ecut = local_field_cutoff(atoms.cell[:], s["response_cutoff_eV"], int(s.get("response_min_G", 1))) \
        if task["level"] == "both" else 1e-3
    df = _CachedDielectricFunction(gpw, frequencies={"type": "nonlinear", "domega0": s["domega0_eV"],
                                                     "omega2": s["omega2_eV"], "omegamax": None},
                                   eta=s["broadening_eV"], ecut=ecut, nbands=nconv, intraband=False,
                                   hilbert=True, txt=_log(workdir, "response"))
    omega = df.get_frequencies()
    ipa, rpa, rpa_half = [], [], []
    for d in "xyz":
        # Under MPI each rank holds a block of the frequencies: collect() gathers the whole grid.
        e_wGG = df.get_dielectric_matrix(direction=d)
        ipa.append(df.collect(e_wGG[:, 0, 0].copy()))
        if task["level"] == "both":
            # The RPA rung, and the same with only the G-vectors within half the local-field cutoff:
            # their similarity is the entry's convergence check (rpa_similarity).
            # At least the first shell beyond G = 0: a basis of G = 0 alone would compare the RPA with the IPA.
            # (|G|²/2 <= ecut/2 in Hartree units is |G|² <= ecut/Hartree.)
            shells = np.unique(np.round(df.G2_G, 8))
            half = np.flatnonzero(df.G2_G <= max(ecut / Hartree, shells[min(1, len(shells) - 1)]) + 1e-9)
            rpa.append(df.collect(np.array([1.0 / np.linalg.inv(e)[0, 0] for e in e_wGG], dtype=complex)))
            rpa_half.append(df.collect(np.array([1.0 / np.linalg.inv(e[np.ix_(half, half)])[0, 0] for e in e_wGG],
                                                dtype=complex)))
    times["response"] = time.process_time() - t0
    out = {
        "omega_eV": omega, "ipa": np.array(ipa), "gap_indirect_eV": gap_ind, "gap_direct_eV": gap_dir,
        "n_bands": nconv, "n_occupied": nocc, "n_kpts_ibz": nkpts_ibz,
        "kpts_nscf": np.array(nscf.wfs.kd.N_c), "kpts_gs": np.array(gs.wfs.kd.N_c),
        "bands_reach_eV": float(eps_top - vbm), "n_symmetries": len(gs.wfs.kd.symmetry.op_scc),
        "cell": atoms.cell[:], "positions": atoms.positions, "n_G": df.n_G, "response_cutoff_eV": ecut,
        "iterations": json.dumps(iterations), "times": json.dumps({**_all_ranks(times), "cpu_total": _all_ranks({"t": time.process_time()})["t"]}),
    }
    if task["level"] == "both":
        out["rpa"] = np.array(rpa)
        out["rpa_half_cutoff"] = np.array(rpa_half)
    return out


def _all_ranks(times: dict[str, float]) -> dict[str, float]:
    """CPU seconds summed over the MPI ranks (core-seconds); the values themselves in a serial run."""
    from gpaw.mpi import world

    keys = sorted(times)
    arr = np.array([times[k] for k in keys])
    world.sum(arr)
    return dict(zip(keys, arr.tolist()))


class _CachedDielectricFunction:
    """GPAW's DielectricFunction with chi0 computed once for the three directions.

    ``get_dielectric_matrix`` recomputes chi0 on every call and overwrites it in place, so the
    cache hands out copies of the G-G block.
    """

    def __new__(cls, *args, **kwargs):
        from gpaw.response.df import DielectricFunction

        class Cached(DielectricFunction):
            _chi0 = None

            def calculate_chi0(self, q_c, spin="all"):
                if self._chi0 is None:
                    self._chi0 = super().calculate_chi0(q_c, spin)
                pd, wGG, wxvG, wvv = self._chi0
                self.n_G = wGG.shape[-1]
                self.G2_G = pd.G2_qG[0]  # |G|^2 in Hartree atomic units, for the half-cutoff check
                return pd, wGG.copy(), wxvG, wvv

        return Cached(*args, **kwargs)


def main(argv: list[str]) -> None:
    from gpaw.mpi import world

    task_path, out_path = argv[1], argv[2]
    with open(task_path) as fh:
        task = json.load(fh)
    # One folder for all MPI ranks (the ground-state file is written collectively and read by all);
    # the caller removes it.
    workdir = os.path.join(task.get("scratch") or tempfile.gettempdir(), "gpaw")
    os.makedirs(workdir, exist_ok=True)
    out = compute(task, workdir)
    if world.rank != 0:
        return
    # The tail of each stage's log (a failure or a slow convergence shows where it happened).
    out["log_tail"] = "".join(_tail(_log(workdir, stage), 1500) for stage in ("gs", "nscf", "response"))
    out["gpaw_version"] = __import__("gpaw").__version__
    out["mpi_ranks"] = world.size
    tmp = out_path + ".part.npz"
    np.savez(tmp, **out)
    os.replace(tmp, out_path)


if __name__ == "__main__":
    main(sys.argv)
