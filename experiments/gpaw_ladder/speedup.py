"""DFT at half the cost (issue #37 item 3): the empty-band step's settings, measured on 20 materials.

Each material is computed with the solver settings before this study (arm A0: BEFORE) and with each candidate arm; each arm's spectra are scored
as SC against A0's, its cost as the ratio of the worker's CPU seconds to A0's (``process_time``, one serial process,
so the cost stays honest when other work shares the cores). The plan and the reasoning behind each arm are in
``speedup_plan.md``. Materials: the 7 of the convergence study (1-4 sites) and 13 cells of 4-6 sites (halides,
oxides, an azide, nitrates, a perovskite, stishovite). The I-arms are the IPA-only run's settings (``level=ipa``,
PW 300 eV, k-density 4.0) with and without the candidates, scored against each other; arm R is the IPA rung at
``convergence.py``'s all-larger reference settings on the 4-6-site cells, against which the cheap IPA run is
scored (issue #37 item 1: median SC >= 0.90), as the 7 of the convergence set are against that study's reference.

Rows go to ``speedup_raw.jsonl.gz`` as they finish (a rerun skips the done ones); the report is ``speedup.md``.

    python experiments/gpaw_ladder/speedup.py [--jobs 2] [--arms A0 A1 ...] [--report-only]
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from optimate_pl.dft.runner import MaterialFailed, gpaw_python, run_material
from optimate_pl.dft.settings import LadderSettings
from optimate_pl.spectra.grid import ENERGY_GRID

HERE = Path(__file__).parent
RAW = HERE / "speedup_raw.jsonl.gz"  # one JSON row a line, appended as gzip members (spectra rounded to 1e-6)
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it

#: 4-6-site cells beside the convergence set (ids of alexandria_le6_structures.json.gz), cheap to dear.
CELLS = ["agm003187765", "agm002147658", "agm003190226", "agm002117446", "agm002163543", "agm003188591",
         "agm002161177", "agm002712469", "agm002758892", "agm005847622", "agm003194125", "agm002559264",
         "agm002170463"]
TOL3 = {"eigenstates_tol": 1e-3}
GS = {"gs_density_tol": 1e-4, "gs_eigenstates_tol": 1e-6}
FAST = {**TOL3, "nscf_dav_niter": 3, "basis": "dzp", **GS}
FASTER = {**FAST, "eigenstates_tol": 1e-2}
#: The first round's defaults (A11) and, on top, a looser ground state (A13: the defaults from the second round).
NEW = {"eigenstates_tol": 1e-1, "extra_bands_frac": 0.3, **GS}  # A11
GS3 = {"gs_density_tol": 1e-3, "gs_eigenstates_tol": 1e-5}
IPA_RUN = {"pw_cutoff_eV": 300.0, "kpt_density_nscf": 4.0}  # the settings of the IPA-only rung's run
#: The defaults since the second round (A13), and the IPA-only run of sessions 15-23 (I9: PW 350, ground-state k 2.0).
DEFAULTS = {**NEW, **GS3}
I9_RUN = {**IPA_RUN, **DEFAULTS, "kpt_density_gs": 2.0, "pw_cutoff_eV": 350.0}
#: convergence.py's all-larger reference (k-density 6.5 / 4.0, PW 400 eV, bands to 30 eV, response cutoff 50 eV).
REFERENCE = {"kpt_density_nscf": 6.5, "kpt_density_gs": 4.0, "pw_cutoff_eV": 400.0, "empty_bands_above_vbm_eV": 30.0,
             "ipa_empty_bands_above_vbm_eV": 30.0, "response_cutoff_eV": 50.0}
#: The solver settings before this study (LadderSettings' defaults until 2026-12-06): every arm starts from them,
#: so that the arms mean the same after the defaults moved (to A11's, then A13's).
BEFORE = {"eigenstates_tol": 1e-5, "extra_bands_frac": 0.0, "gs_density_tol": 1e-5, "gs_eigenstates_tol": 4e-8,
          "nscf_dav_niter": 2, "basis": "", "ipa_empty_bands_above_vbm_eV": 20.0}
#: arm -> (level, settings overrides, the arm it is scored against)
ARMS = {
    "A0": ("both", {}, "A0"),
    "A1": ("both", TOL3, "A0"),
    "A2": ("both", {"eigenstates_tol": 1e-2}, "A0"),
    "A3": ("both", {**TOL3, "nscf_dav_niter": 3}, "A0"),
    "A4": ("both", {**TOL3, "basis": "dzp"}, "A0"),
    "A5": ("both", {**TOL3, "extra_bands_frac": 0.15}, "A0"),
    "A6": ("both", GS, "A0"),
    "A7": ("both", FAST, "A0"),
    "A8": ("both", FASTER, "A0"),
    "A9": ("both", {"eigenstates_tol": 1e-2, "extra_bands_frac": 0.15, **GS}, "A0"),
    "A10": ("both", {"eigenstates_tol": 1e-2, "extra_bands_frac": 0.3, **GS}, "A0"),
    "A11": ("both", NEW, "A0"),
    "A12": ("both", {"eigenstates_tol": 1.0, "extra_bands_frac": 0.3, **GS}, "A0"),
    "A13": ("both", DEFAULTS, "A0"),
    "A14": ("both", {**DEFAULTS, "kpt_density_gs": 2.0}, "A0"),
    # A0 and A13 again, timed together with nothing else running (session 24): A13 was computed in a later run than
    # A0, and the same calculation's CPU seconds can differ twofold with the load of the cores (I9x below).
    "A0x": ("both", {}, "A0x"),
    "A13x": ("both", DEFAULTS, "A0x"),
    # The response step is 0.16 of A13x's core-seconds: its frequency grid at twice the spacing (0.1 eV at 0, 0.2 eV at
    # 20 eV, against the 0.3 eV broadening), alone and with the coarser ground-state k-grid of A14 (timed idle, in the
    # session of A0x and A13x).
    "A15": ("both", {**DEFAULTS, "domega0_eV": 0.1}, "A0x"),
    "A16": ("both", {**DEFAULTS, "domega0_eV": 0.1, "kpt_density_gs": 2.0}, "A0x"),
    "I0": ("ipa", IPA_RUN, "I0"),
    "I1": ("ipa", {**IPA_RUN, **FAST, "ipa_empty_bands_above_vbm_eV": 15.0}, "I0"),
    "I2": ("ipa", {**IPA_RUN, **FASTER, "ipa_empty_bands_above_vbm_eV": 15.0}, "I0"),
    "I3": ("ipa", {**IPA_RUN, "eigenstates_tol": 1e-2, "extra_bands_frac": 0.15, **GS,
                   "ipa_empty_bands_above_vbm_eV": 15.0}, "I0"),
    "I4": ("ipa", {**IPA_RUN, "eigenstates_tol": 1e-2, "extra_bands_frac": 0.3, **GS,
                   "ipa_empty_bands_above_vbm_eV": 15.0}, "I0"),
    "I5": ("ipa", {**IPA_RUN, "eigenstates_tol": 1e-2, "extra_bands_frac": 0.3, **GS}, "I0"),
    "I6": ("ipa", {**IPA_RUN, **NEW}, "I0"),
    "I7": ("ipa", {**IPA_RUN, **DEFAULTS, "kpt_density_gs": 2.0}, "I0"),
    # I7 with the plane-wave cutoff raised: on 4-6-site cells I7 scored a median SC of 0.877 against the reference,
    # below issue #37's 0.90 (azides, oxides, fluorides: first-row anions want more than 300 eV).
    "I8": ("ipa", {**I9_RUN, "pw_cutoff_eV": 400.0}, "I0"),
    "I9": ("ipa", I9_RUN, "I0"),
    # I9 on coarser dense k-grids (session 24): the IPA-only run's cost is mostly the empty-band step, whose work grows
    # with the number of k-points, and I9 sits well above the 0.90 bound against the reference (median 0.948). I9 is
    # computed again beside them (I9x, the same settings) so that the three are timed under the same conditions: I9's
    # own rows come from another session, and the same calculation's CPU seconds differ between sessions (load).
    "I9x": ("ipa", I9_RUN, "I0"),
    "I10": ("ipa", {**I9_RUN, "kpt_density_nscf": 3.5}, "I9x"),
    "I11": ("ipa", {**I9_RUN, "kpt_density_nscf": 3.0}, "I9x"),
    # The IPA rung at the all-larger reference settings of convergence.py (its 7 materials have it already):
    # what the cheap IPA run is scored against on 4-6-site cells (issue #37 item 1).
    "R": ("ipa", REFERENCE, "R"),
}
#: Arms computed on some materials only.
ONLY = {"R": set(CELLS)}
LABELS = {
    "A0": "before: nscf 1e-5, 4 buffer bands, ground state 1e-5 / 4e-8", "A1": "nscf tolerance 1e-3", "A2": "nscf tolerance 1e-2",
    "A3": "1e-3 + Davidson 3 steps", "A4": "1e-3 + dzp start", "A5": "1e-3 + 15 % buffer bands",
    "A6": "ground state 1e-4 / 1e-6", "A7": "1e-3 + 3 steps + dzp + ground state",
    "A8": "A7 at 1e-2", "A9": "1e-2 + 15 % buffer + ground state",
    "A10": "1e-2 + 30 % buffer + ground state", "A11": "A10 at 1e-1 (the defaults from the first round)", "A12": "A10 at 1", "I0": "the IPA run before (PW 300, k 4.0, A0's solver)", "I1": "I0 + A7 + IPA bands to 15 eV",
    "I2": "I0 + A8 + IPA bands to 15 eV", "I3": "I0 + A9 + IPA bands to 15 eV",
    "I4": "I0 + A10 + IPA bands to 15 eV", "I5": "I0 + A10 (bands to 20 eV)", "I6": "I0 + A11 (bands to 20 eV)",
    "A13": "A11 + ground state 1e-3 / 1e-5 (**the defaults**)", "A14": "A13 + ground-state k-density 2.0",
    "I7": "I0 + A14 (PW 300: below issue #37's 0.90 against the reference)", "R": "the reference settings (IPA only)",
    "I8": "I7 at PW 400 eV (k-density 4.0)", "I9": "I7 at PW 350 eV (the IPA-only run, sessions 15-23)",
    "A0x": "A0 again, timed with A13x, idle", "A13x": "A13 again, timed with A0x, idle (against A0x)",
    "A15": "A13 + frequency spacing 0.1 eV (against A0x, idle)", "A16": "A15 + ground-state k-density 2.0 (against A0x, idle)",
    "I9x": "I9 again, timed beside I10 and I11", "I10": "I9 at k-density 3.5 (against I9x)",
    "I11": "I9 at k-density 3.0 (against I9x; **the IPA-only run from session 24**)",
}


def materials() -> list[tuple[str, str, dict]]:
    """(mat_id, formula, structure dict) of the 20 materials, the convergence set first."""
    conv = json.loads((HERE / "convergence_structures.json").read_text())["entries"]
    out = [(e["data"]["mat_id"], e["data"]["formula"], e["structure"]) for e in conv]
    with gzip.open(HERE / "alexandria_le6_structures.json.gz", "rt") as fh:
        by_id = {e["data"]["mat_id"]: e for e in json.load(fh)["entries"]}
    return out + [(i, by_id[i]["data"]["formula"], by_id[i]["structure"]) for i in CELLS]


def sc(x: np.ndarray, ref: np.ndarray) -> float:
    """SC[x; ref] = 1 - ∫|x - ref| / ∫|ref| (trapezoid on the grid), REFERENCE §7."""
    return float(1 - _trapezoid(np.abs(x - ref), ENERGY_GRID) / _trapezoid(np.abs(ref), ENERGY_GRID))


def _rounded(x: np.ndarray) -> list[float]:
    """A spectrum to 1e-6 (far below any SC difference reported; keeps the raw file small)."""
    return np.round(x, 6).tolist()


def _rows() -> list[dict]:
    if not RAW.exists():
        return []
    with gzip.open(RAW, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def one(job: tuple) -> dict:
    """One material at one arm: spectra (trace of Im ε), gaps, cost by stage, SCF iterations."""
    mat_id, formula, sdict, arm, python = job
    level, overrides, _ = ARMS[arm]
    settings = dataclasses.replace(LadderSettings(), **{**BEFORE, **overrides})
    row = dict(mat_id=mat_id, formula=formula, nsites=len(sdict["sites"]), arm=arm)
    try:
        r = run_material(Structure.from_dict(sdict), settings, level, python=python, nice=10)
    except MaterialFailed as err:
        return {**row, "error": str(err)}
    return {**row, "seconds": r.core_seconds, **{f"t_{k}": v for k, v in r.times.items() if k not in ("total", "wall")},
            "gap_indirect": r.gap_indirect, "gap_direct": r.gap_direct, "ipa": _rounded(r.ipa.imag.mean(0)),
            "rpa": None if r.rpa is None else _rounded(r.rpa.imag.mean(0)),
            **{k: v for k, v in r.info.items() if k in ("n_bands", "n_kpts_ibz", "bands_reach_eV", "n_G", "scf_iterations")}}


def run(arms: list[str], jobs: int) -> None:
    """Compute the missing (material, arm) pairs, material by material (a pair runs under the same load)."""
    done = {(r["mat_id"], r["arm"]) for r in _rows() if "error" not in r}
    python = gpaw_python()[0]
    todo = [(m, f, s, a, python) for m, f, s in materials() for a in arms
            if (m, a) not in done and (a not in ONLY or m in ONLY[a])]
    print(f"{len(todo)} runs to go", flush=True)
    with ProcessPoolExecutor(jobs) as pool:
        for row in pool.map(one, todo):
            with gzip.open(RAW, "at") as out:  # one gzip member a row: a killed run loses only the running ones
                out.write(json.dumps(row) + "\n")
            print(row["formula"], row["arm"], row.get("seconds", row.get("error")), row.get("scf_iterations"), flush=True)


def report() -> str:
    """Per arm: cost against its baseline (sum and median ratio, nscf alone) and SC against it (IPA, RPA)."""
    rows = _rows()
    df = pd.DataFrame([r for r in rows if "error" not in r]).drop_duplicates(["mat_id", "arm"], keep="last")
    by = {(r.mat_id, r.arm): r for r in df.itertuples()}
    per = []
    for r in df.itertuples():
        base = by.get((r.mat_id, ARMS[r.arm][2]))
        if base is None:
            continue
        iters = r.scf_iterations if isinstance(r.scf_iterations, dict) else {}
        per.append(dict(mat_id=r.mat_id, formula=r.formula, nsites=r.nsites, arm=r.arm, seconds=r.seconds,
                        base_seconds=base.seconds, nscf=r.t_empty_bands, base_nscf=base.t_empty_bands,
                        gs=r.t_ground_state, base_gs=base.t_ground_state,
                        sc_ipa=sc(np.array(r.ipa), np.array(base.ipa)),
                        sc_rpa=sc(np.array(r.rpa), np.array(base.rpa)) if r.rpa and base.rpa else np.nan,
                        dgap=abs(r.gap_indirect - base.gap_indirect), nscf_iter=iters.get("empty_bands"),
                        gs_iter=iters.get("ground_state"), n_bands=r.n_bands))
    t = pd.DataFrame(per)
    # The accuracy bound: on the convergence set, SC against the all-larger reference moves by <= 0.005.
    ref = pd.read_json(HERE / "convergence_combined_raw.json.gz")
    ref = {r.mat_id: r for r in ref[ref.value == "reference"].itertuples()}
    for rung in ("ipa", "rpa"):
        t[f"dref_{rung}"] = [
            sc(np.array(getattr(by[(m, a)], rung)), np.array(getattr(ref[m], rung)))
            - sc(np.array(getattr(by[(m, ARMS[a][2])], rung)), np.array(getattr(ref[m], rung)))
            if m in ref and getattr(by[(m, a)], rung) else np.nan for m, a in zip(t.mat_id, t.arm)]
    lines = ["# DFT at half the cost: empty-band step settings on 20 materials (GPAW-computed)", "",
             "Every arm against its baseline (A-arms: A0, the settings before, `level=both`; I-arms: the IPA-only run's "
             "settings, `level=ipa`), on the same materials. Cost: the worker's CPU seconds (one serial process); "
             "SC of the trace of Im ε against the baseline's. `python experiments/gpaw_ladder/speedup.py`.", "",
             "| arm | what | n | core-s (sum) | ratio of sums | median ratio | nscf ratio | nscf iterations (median) "
             "| median SC IPA | min SC IPA | median SC RPA | min SC RPA | max Δgap (meV) "
             "| worst ΔSC[·; reference] IPA | RPA (convergence set) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        g = t[t.arm == arm]
        if g.empty or arm in ONLY:
            continue
        lines.append(
            f"| {arm} | {LABELS[arm]} | {len(g)} | {g.seconds.sum():.0f} | {g.seconds.sum() / g.base_seconds.sum():.2f} | "
            f"{(g.seconds / g.base_seconds).median():.2f} | {g.nscf.sum() / g.base_nscf.sum():.2f} | "
            f"{g.nscf_iter.median():.0f} | {g.sc_ipa.median():.4f} | {g.sc_ipa.min():.4f} | "
            f"{g.sc_rpa.median():.4f} | {g.sc_rpa.min():.4f} | {1000 * g.dgap.max():.1f} | "
            f"{_worst(g.dref_ipa)} | {_worst(g.dref_rpa)} |")
    lines += ["", "Columns: ratio of sums = Σ core-s of the arm / Σ of its baseline; nscf = the empty-band step alone; "
              "SC[arm; baseline] of the trace of Im ε; the last two: SC[arm; reference] - SC[baseline; reference] on the 7 "
              "materials of the convergence study, whose all-larger reference is in `convergence_combined_raw.json.gz` "
              "(the issue's bound: within 0.005).", "",
              "**Timing under load.** I9x is I9's calculation again (the same spectra), timed with nothing else running "
              "beside I10 and I11 (session 24): 209 core-s against I9's 421, timed beside other work in an earlier "
              "session. CPU seconds of a serial process grow with what shares the cores (caches, memory bandwidth), "
              "so only arms timed together compare: I10 and I11 with I9x, and A13x with A0x. A0x and A13x are A0 and "
              "A13 again, timed together with nothing else running (session 24): 669 and 361 core-s, a ratio of "
              "0.54, against A0's 1620 and A13's 805 (0.50) when A13 ran in a later run than A0, under other load. "
              "The other arms' ratios are as measured in their own runs, under load: where an arm and its baseline "
              "ran at different times, a ratio can be off by a factor of this kind. Even idle, runs drift: A15's ground "
              "state and empty-band step are A13x's calculations, and took 10 % and 8 % more core-seconds in their own "
              "run (per material 0.63-1.35 on the empty-band step), so a ratio from two runs carries about +-0.05. "
              "A15 saved nothing: the response step does not scale with the number of frequencies (57 and 59 core-s "
              "with the spacing doubled). A16 reaches 0.52 but moves SC by up to 0.02 (KNa2Sb), as A14 did.",
              *cheap_rung(by, ref),
              "", "## Per material", "", t.drop(columns=["mat_id"]).to_markdown(index=False, floatfmt=".4g")]
    text = "\n".join(lines) + "\n"
    (HERE / "speedup.md").write_text(text)
    return text


def cheap_rung(by: dict, ref: dict) -> list[str]:
    """Issue #37 item 1: the IPA-only run's settings against the converged reference, on the convergence set (its
    reference from convergence.py) and on 4-6-site cells (arm R): the bound is a median SC of at least 0.90."""
    refs = {m: np.array(r.ipa) for m, r in ref.items()}
    refs.update({m: np.array(r.ipa) for (m, a), r in by.items() if a == "R"})
    rows = []
    for arm in ("I0", "I6", "I7", "I11", "I10", "I9", "I8", "A13"):
        for m, x in refs.items():
            if (m, arm) in by:
                r = by[(m, arm)]
                rows.append(dict(arm=arm, formula=r.formula, nsites=r.nsites, sc=sc(np.array(r.ipa), x)))
    if not rows:
        return []
    t = pd.DataFrame(rows)
    out = ["", "## The cheap IPA rung against the converged reference (issue #37 item 1)", "",
           "SC of the IPA trace against the all-larger reference (k-density 6.5, PW 400 eV, bands to 30 eV; "
           "`convergence.py`'s on its 7 materials, arm R on cells of 4-6 sites). The bound: median SC >= 0.90.", "",
           "| arm | what | n | median SC | min SC (material) | median SC, 4-6 sites |", "|---|---|---|---|---|---|"]
    for arm, g in t.groupby("arm", sort=False):
        low = g.loc[g.sc.idxmin()]
        big = g[g.nsites >= 4]
        out.append(f"| {arm} | {LABELS[arm]} | {len(g)} | {g.sc.median():.3f} | {low.sc:.3f} ({low.formula}) | "
                   f"{big.sc.median():.3f} (n = {len(big)}) |")
    wide = t.pivot_table(index=["formula", "nsites"], columns="arm", values="sc", sort=False).reset_index()
    return out + ["", wide.to_markdown(index=False, floatfmt=".3f")]


def _worst(d: pd.Series) -> str:
    """The change of largest size, signed (SC against the reference: negative is worse)."""
    d = d.dropna()
    return "-" if d.empty else f"{d.loc[d.abs().idxmax()]:+.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--arms", nargs="*", default=list(ARMS))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        run(args.arms, args.jobs)
    print(report())


if __name__ == "__main__":
    main()
