"""The GPAW ladder itself: how much local fields change the spectra, for which chemistries, at what cost.

    python -m optimate_pl.studies gpaw_ladder [--runs PACKED_DATASET_DIR] [--out DIR]

Reads the built-in GPAW-computed dataset (``optimate_pl/data/builtin_gpaw``, or a packed folder given as
``--runs``) and writes ``ladder_materials.csv`` (one row per material), ``ladder_chemistry.md`` (median
SC[RPA;IPA] per anion family and the materials where local fields matter most, to compare with the paper's
halides, azides and nitrates), ``ladder_cost.md`` (core-seconds per material by number of sites) and
``ladder.png``/``.pdf`` (the SC[RPA;IPA] histogram, ε∞ without vs with local fields, cost vs sites).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data import ladder as ladder_data
from ..spectra.grid import ENERGY_GRID
from ..utils.plots import plt, save_with_statement
from .output import write_table
from .runs import StudyInputError

STATEMENT = "GPAW-computed (real physics: PBE, this project's ladder settings; not the authors' databases)"
#: Anion families in the order a material is assigned (the first that its elements contain).
FAMILIES = (("noble gas", {"He", "Ne", "Ar", "Kr", "Xe"}), ("halide", {"F", "Cl", "Br", "I"}),
            ("chalcogenide", {"O", "S", "Se", "Te"}), ("pnictide", {"N", "P", "As", "Sb"}),
            ("hydride", {"H"}), ("carbide/tetrelide", {"C", "Si", "Ge", "Sn"}))
_trapz = getattr(np, "trapezoid", None) or np.trapz
#: Covalent bond length limit (Å) for the molecular anions the paper singles out: N-N in an azide N3- is
#: ~1.18 Å, N-O in a nitrate NO3- ~1.25 Å; ionic contacts in these crystals are beyond 2 Å.
MOLECULAR_BOND = 1.4


def molecular_anion(structure: dict) -> str | None:
    """``"azide"`` (an N bonded to two N) or ``"nitrate"`` (an N bonded to three O) where the structure (a
    pymatgen dict) holds such a molecular anion, else ``None``: by geometry, not formula (N2O and NaN3 both
    hold N-N bonds, only one is an azide). An N with two N neighbours also matches the N5- ring of a pentazolate;
    the input holds none."""
    from pymatgen.core import Structure

    if not any(sp["element"] == "N" for site in structure["sites"] for sp in site["species"]):
        return None
    st = Structure.from_dict(structure)
    for site in st:
        if site.specie.symbol != "N":
            continue
        near = [n.specie.symbol for n in st.get_neighbors(site, MOLECULAR_BOND)]
        if near.count("N") == 2:
            return "azide"
        if near.count("O") == 3:
            return "nitrate"
    return None


def family(elements: list[str], structure: dict | None = None) -> str:
    """The anion family of a composition (elemental solids are their own family); with the ``structure``,
    azides and nitrates (:func:`molecular_anion`) come first."""
    if len(set(elements)) == 1:
        return "elemental"
    anion = molecular_anion(structure) if structure is not None else None
    if anion:
        return anion
    for name, members in FAMILIES:
        if members & set(elements):
            return name
    return "other"


def materials_table(src: Path | None = None) -> pd.DataFrame:
    """One row per material with both rungs: gaps, ε∞ of both rungs, SC[RPA;IPA], cost."""
    materials, rows = ladder_data.load(src)
    out = []
    for m in materials:
        if not m["has_rpa"]:
            continue
        spec = m["spectra"]
        ipa_i, rpa_i = rows[spec["ipa_epsI"]].mean(0), rows[spec["rpa_epsI"]].mean(0)
        ipa_r, rpa_r = rows[spec["ipa_epsR"]].mean(0), rows[spec["rpa_epsR"]].mean(0)
        d, p = m["data"], m["parameters"]
        elements = [s["species"][0]["element"] for s in m["structure"]["sites"]]
        out.append({"mat_id": m["mat_id"], "formula": d["formula"], "nsites": len(elements), "spg": d.get("spg"),
                    "family": family(elements, m["structure"]), "gap_indirect_eV": d["ipa_indirect_gap"],
                    "gap_direct_eV": d["ipa_direct_gap"], "eps_inf_ipa": ipa_r[0], "eps_inf_rpa": rpa_r[0],
                    "sc_rpa_ipa": 1 - _trapz(np.abs(rpa_i - ipa_i), ENERGY_GRID) / _trapz(np.abs(ipa_i), ENERGY_GRID),
                    "rpa_similarity": d.get("rpa_similarity"), "core_seconds": p["core_seconds"]["total"],
                    "kpts_ibz": p.get("n_kpts_ibz"), "bands": p.get("ipa_nbands")})
    return pd.DataFrame(out)


def ipa_only_materials(src: Path | None = None) -> pd.DataFrame:
    """Sites and core-seconds of the materials that have the IPA rung alone (no rows where none has)."""
    rows = [(len(m["structure"]["sites"]), m["parameters"]["core_seconds"]["total"])
            for m in ladder_data.read_materials(src) if not m["has_rpa"]]
    return pd.DataFrame(rows, columns=["nsites", "core_seconds"])


def cost_by_sites(t: pd.DataFrame) -> pd.DataFrame:
    """Materials and mean / median / max core-seconds by number of sites (``nsites``, ``core_seconds`` columns)."""
    return (t.groupby("nsites")["core_seconds"].agg(["count", "mean", "median", "max"]).reset_index()
            .rename(columns={"count": "materials", "mean": "mean core-s", "median": "median core-s",
                             "max": "max core-s"}))


def gpaw_ladder(runs_dir: Path, out: Path) -> list[Path]:
    """The report (module docstring); ``runs_dir``: a packed dataset folder, else the built-in one."""
    src = runs_dir if (runs_dir / "materials.json.gz").is_file() else None
    t = materials_table(src)
    if t.empty:
        raise StudyInputError(f"no material of {src or 'the built-in dataset'} has both rungs: the ladder report "
                              f"compares IPA and RPA (an IPA-only pack has nothing to compare)")
    written = write_table(t, out, "ladder_materials", STATEMENT)
    fam = (t.groupby("family")["sc_rpa_ipa"].agg(["count", "median", "min"]).reset_index()
           .sort_values("median").rename(columns={"count": "materials", "median": "median SC[RPA;IPA]",
                                                  "min": "lowest"}))
    lowest = t.nsmallest(12, "sc_rpa_ipa")[["mat_id", "formula", "family", "nsites", "sc_rpa_ipa", "eps_inf_ipa",
                                            "eps_inf_rpa"]]
    written += write_table(fam, out, "ladder_chemistry", STATEMENT,
                           f"{len(t)} materials, median SC[RPA;IPA] {t.sc_rpa_ipa.median():.3f} (the paper's "
                           "databases: 0.69 for SC[IPA;RPA]); per anion family, lowest first.")
    written += write_table(lowest, out, "ladder_lowest", STATEMENT, "Where local fields change the spectrum most.")
    written += write_table(cost_by_sites(t), out, "ladder_cost", STATEMENT,
                           f"Both rungs from one GPAW run; {t.core_seconds.sum() / 3600:.2f} core-hours in all.")
    ipa_only = ipa_only_materials(src)
    if not ipa_only.empty:  # a pack with a cheap IPA-only rung (issue #37): its cost apart, it has other settings
        written += write_table(cost_by_sites(ipa_only), out, "ladder_cost_ipa_only", STATEMENT,
                               f"The {len(ipa_only)} materials with the IPA rung alone (the cheap run's own settings, "
                               f"in each entry's parameters); {ipa_only.core_seconds.sum() / 3600:.2f} core-hours in "
                               f"all.")
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.4))
    ax[0].hist(t.sc_rpa_ipa, bins=30, color="tab:blue")
    ax[0].set(xlabel="SC[RPA; IPA]", ylabel="materials", title=f"median {t.sc_rpa_ipa.median():.3f}")
    ax[1].scatter(t.eps_inf_ipa, t.eps_inf_rpa, s=8)
    lim = [0, float(max(t.eps_inf_ipa.max(), t.eps_inf_rpa.max())) * 1.05]
    ax[1].plot(lim, lim, "k--", lw=0.8)
    ax[1].set(xlabel="ε∞ IPA (Re ε at 0)", ylabel="ε∞ RPA", xlim=lim, ylim=lim)
    ax[2].scatter(t.nsites + np.random.default_rng(0).uniform(-0.15, 0.15, len(t)), t.core_seconds, s=8)
    ax[2].set(xlabel="sites", ylabel="core-seconds (both rungs)", yscale="log")
    fig.tight_layout()
    written += save_with_statement(fig, out, "ladder", STATEMENT)
    return written
