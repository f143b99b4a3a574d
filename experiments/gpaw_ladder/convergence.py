"""Convergence and cost of the GPAW ladder settings (issue: real physics in the box).

For each material of ``convergence_structures.json`` (Alexandria, CC BY 4.0) and each setting, the
rungs are computed with that setting varied alone from the defaults (``LadderSettings``), and each
spectrum is scored as SC against the same material computed at the setting's highest value. Cost
is the worker's CPU time (one serial process). Writes ``convergence.csv`` and ``convergence.md`` here.

    python experiments/gpaw_ladder/convergence.py [--jobs 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it
import pandas as pd
from pymatgen.core import Structure

from optimate_pl.spectra.grid import ENERGY_GRID
from optimate_pl.dft.runner import MaterialFailed, gpaw_python, run_material
from optimate_pl.dft.settings import LadderSettings

HERE = Path(__file__).parent
#: setting -> values tried (the last is the reference the others are scored against)
SWEEP = {
    "kpt_density_nscf": [3.0, 4.0, 5.0, 6.5],
    "empty_bands_above_vbm_eV": [15.0, 20.0, 30.0],
    "pw_cutoff_eV": [250.0, 300.0, 400.0],
    "response_cutoff_eV": [15.0, 30.0, 50.0],
    "kpt_density_gs": [2.5, 4.0],
}
#: All settings at once: the defaults and a dearer candidate, against every setting at its largest value.
COMBINED = {
    "defaults": {},
    "k5_pw400": {"kpt_density_nscf": 5.0, "pw_cutoff_eV": 400.0},
    "reference": {k: v[-1] for k, v in SWEEP.items()},
}


def sc(x: np.ndarray, ref: np.ndarray) -> float:
    """SC[x; ref] = 1 - ∫|x - ref| / ∫|ref| (trapezoid on the grid), REFERENCE §7."""
    return float(1 - _trapezoid(np.abs(x - ref), ENERGY_GRID) / _trapezoid(np.abs(ref), ENERGY_GRID))


def one(job):
    mat_id, formula, sdict, key, value, python = job
    if key == "combined":
        settings = dataclasses.replace(LadderSettings(), **COMBINED[value])
    else:
        settings = dataclasses.replace(LadderSettings(), **({key: value} if key else {}))
    try:
        r = run_material(Structure.from_dict(sdict), settings, "both", python=python, nice=10)
    except MaterialFailed as err:
        return dict(mat_id=mat_id, formula=formula, setting=key, value=value, error=str(err))
    return dict(mat_id=mat_id, formula=formula, nsites=len(sdict["sites"]), setting=key, value=value,
                seconds=r.core_seconds, **{f"t_{k}": v for k, v in r.times.items() if k not in ("total", "wall")},
                ipa=r.ipa.imag.mean(0).tolist(), rpa=r.rpa.imag.mean(0).tolist(),
                eps0_ipa=float(r.ipa.real.mean(0)[0]), eps0_rpa=float(r.rpa.real.mean(0)[0]), **r.info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="mat_ids to run (default all)")
    ap.add_argument("--combined", action="store_true", help="all settings at once: defaults and a candidate "
                    "against the all-largest reference (convergence_combined.*)")
    args = ap.parse_args()
    if args.combined:
        return combined(args)
    entries = json.loads((HERE / "convergence_structures.json").read_text())["entries"]
    jobs, python = [], gpaw_python()[0]
    for e in entries:
        if args.only and e["data"]["mat_id"] not in args.only:
            continue
        for key, values in SWEEP.items():
            for v in values:
                jobs.append((e["data"]["mat_id"], e["data"]["formula"], e["structure"], key, v, python))
    rows = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, jobs):
            rows.append(row)
            print(row["formula"], row["setting"], row["value"], row.get("seconds", row.get("error")), flush=True)
    df = pd.DataFrame(rows)
    df.to_json(HERE / "convergence_raw.json.gz", orient="records")
    report(df)


def combined(args) -> None:
    """Each material at the defaults, the candidate and the reference: the defaults' total error."""
    entries = json.loads((HERE / "convergence_structures.json").read_text())["entries"]
    python = gpaw_python()[0]
    jobs = [(e["data"]["mat_id"], e["data"]["formula"], e["structure"], "combined", name, python)
            for e in entries for name in ("reference", "k5_pw400", "defaults")
            if not args.only or e["data"]["mat_id"] in args.only]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = []
        for row in pool.map(one, jobs):
            rows.append(row)
            print(row["formula"], row["value"], row.get("seconds", row.get("error")), flush=True)
    df = pd.DataFrame(rows)
    df.to_json(HERE / "convergence_combined_raw.json.gz", orient="records")
    out = []
    for mat, g in df.groupby("mat_id", sort=False):
        ref = g[g["value"] == "reference"].iloc[0]
        for _, row in g[g["value"] != "reference"].iterrows():
            out.append(dict(formula=row["formula"], nsites=row["nsites"], settings=row["value"],
                            sc_ipa=sc(np.array(row["ipa"]), np.array(ref["ipa"])),
                            sc_rpa=sc(np.array(row["rpa"]), np.array(ref["rpa"])), seconds=row["seconds"],
                            reference_seconds=ref["seconds"]))
    t = pd.DataFrame(out)
    t.to_csv(HERE / "convergence_combined.csv", index=False, float_format="%.4g")
    lines = ["# All settings at once, against the all-largest reference", "",
             "Reference: " + ", ".join(f"{k} {v:g}" for k, v in COMBINED["reference"].items()) + ".", "",
             "| settings | median SC IPA | min SC IPA | median SC RPA | min SC RPA | mean core-s (<= 4 sites) |",
             "|---|---|---|---|---|---|"]
    for name, g in t.groupby("settings"):
        lines.append(f"| {name} | {g.sc_ipa.median():.3f} | {g.sc_ipa.min():.3f} | {g.sc_rpa.median():.3f} | "
                     f"{g.sc_rpa.min():.3f} | {g[g.nsites <= 4].seconds.mean():.1f} |")
    lines += ["", t.to_markdown(index=False, floatfmt=".3f")]
    (HERE / "convergence_combined.md").write_text("\n".join(lines) + "\n")


def report(df: pd.DataFrame) -> None:
    """SC of each run against its setting's reference; the table as CSV and Markdown."""
    out = []
    for (mat, key), g in df.groupby(["mat_id", "setting"]):
        ref = g.loc[g["value"].idxmax()]
        for _, row in g.iterrows():
            out.append(dict(mat_id=mat, formula=row["formula"], nsites=row["nsites"], setting=key, value=row["value"],
                            reference=ref["value"], sc_ipa=sc(np.array(row["ipa"]), np.array(ref["ipa"])),
                            sc_rpa=sc(np.array(row["rpa"]), np.array(ref["rpa"])), seconds=row["seconds"],
                            eps0_ipa=row["eps0_ipa"], eps0_rpa=row["eps0_rpa"]))
    t = pd.DataFrame(out)
    t.to_csv(HERE / "convergence.csv", index=False, float_format="%.4g")
    lines = ["# GPAW ladder: convergence and cost (GPAW-computed, this 2-core machine, one core per run)", "",
             "Each setting varied alone from the defaults; SC against the same material at the setting's",
             "largest value. `python experiments/gpaw_ladder/convergence.py`.", ""]
    for key, g in t.groupby("setting"):
        lines += [f"## {key}", "", "| value | median SC IPA | min SC IPA | median SC RPA | min SC RPA | mean s |",
                  "|---|---|---|---|---|---|"]
        for v, gv in g.groupby("value"):
            lines.append(f"| {v:g} | {gv.sc_ipa.median():.3f} | {gv.sc_ipa.min():.3f} | {gv.sc_rpa.median():.3f} | "
                         f"{gv.sc_rpa.min():.3f} | {gv.seconds.mean():.1f} |")
        lines.append("")
    (HERE / "convergence.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
