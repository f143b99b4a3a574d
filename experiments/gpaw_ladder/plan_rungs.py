"""Which structures get the expensive RPA rung next, and which the cheap IPA rung alone (issue #37 items 1 and 2).

The RPA rung grows to ``--target`` materials (1,000) from structures chosen by a stratified random draw, not by
cost: the published split's proportions (4610 : 603 : 639) for the whole rung, and within each split the pool's
own mix of cell sizes (4-6 sites; every cell of 1-3 sites has both rungs already) and chemical families (halides,
oxides, chalcogenides, nitrides, hydrides, azides and nitrates, the rest). The list is interleaved so that any
prefix of it keeps those proportions: a run stopped half way leaves a balanced rung, not the first strata. Every
other structure that passes the filters gets the IPA rung alone, smallest cells first. Both lists are ``ids=``
files of the compute command; materials already done (or refused: a PBE gap below 0.5 eV, a metal) are left out.
Drawn once and committed (2026-12-06: 461 for the RPA rung, 2,292 for the IPA rung alone): the lists are the plan,
and drawing again from a pool that has changed gives another list. ``ipa_plan.txt`` then had the 96 materials of
``progress_ipa/`` appended that are not in the RPA plan: they were computed at PW 300 eV, below the bound of issue
#37 item 1 (``speedup.md``), and are recomputed at the end.

    python experiments/gpaw_ladder/plan_rungs.py            # writes rpa_plan.txt and ipa_plan.txt here
    optimate-pl-compute input=experiments/gpaw_ladder/alexandria_le6_structures.json.gz \\
        output=experiments/gpaw_ladder/runs/ladder ids=experiments/gpaw_ladder/rpa_plan.txt       # both rungs
    optimate-pl-compute input=... output=experiments/gpaw_ladder/runs/ipa_rung level=ipa \\
        ids=experiments/gpaw_ladder/ipa_plan.txt settings.pw_cutoff_eV=350 ...                     # the cheap rung
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
from pymatgen.core import Composition

from optimate_pl.data.splits import published_split
from optimate_pl.dft.compute import BY_SETTINGS, TRANSIENT, Workdir
from optimate_pl.utils.atomic import atomic_write_text

HERE = Path(__file__).parent
#: The paper's RPA split (training / validation / test materials).
RPA_SPLIT = {"train": 4610, "validation": 603, "test": 639}
HALOGENS = {"F", "Cl", "Br", "I"}
CHALCOGENS = {"S", "Se", "Te"}


def family(mat_id: str, formula: str, azides_nitrates: set[str]) -> str:
    """The chemical family by the most electronegative element (the anion); azides and nitrates by their bonds
    (``azides_nitrates.txt``, found by geometry)."""
    if mat_id in azides_nitrates:
        return "azide/nitrate"
    anion = max(Composition(formula).elements, key=lambda e: e.X if not math.isnan(e.X) else 0.0).symbol
    if anion in HALOGENS:
        return "halide"
    if anion == "O":
        return "oxide"
    if anion in CHALCOGENS:
        return "chalcogenide"
    return {"N": "nitride", "H": "hydride"}.get(anion, "other")


def _ids(path: Path) -> set[str]:
    """The mat_ids of a packed folder (materials.json.gz) or of a compute folder's entries (ipa/*.json names)."""
    if (path / "materials.json.gz").is_file():
        return {m["mat_id"] for m in json.loads(gzip.decompress((path / "materials.json.gz").read_bytes()))}
    return {p.stem for p in (path / "ipa").glob("*.json")} if (path / "ipa").is_dir() else set()


def _refused(folders: list[Path]) -> set[str]:
    """Materials a compute run refused for good (not an insulator, odd electrons, disordered): never planned. Read
    as the compute command reads its error tables (``Workdir``, every chunk's); a time limit or a GPAW error is
    worth another try, and a run setting's filter (sites, the input's gap) is this plan's own to apply."""
    return {mat_id for folder in folders if folder.is_dir()
            for mat_id, row in Workdir(folder, "ipa").known.items() if row["reason"] not in TRANSIENT | BY_SETTINGS}


def allocate(counts: dict, n: int) -> dict:
    """``n`` spread over the keys in proportion to ``counts`` (largest remainder), never more than a key has."""
    total = sum(counts.values())
    if n >= total:
        return dict(counts)
    share = {k: n * c / total for k, c in counts.items()}
    out = {k: int(math.floor(v)) for k, v in share.items()}
    for k in sorted(share, key=lambda k: share[k] - out[k], reverse=True)[: n - sum(out.values())]:
        out[k] += 1
    return out


def plan(entries: list[dict], split: dict[str, str], both: set[str], ipa_done: set[str], refused: set[str],
         azides_nitrates: set[str], target: int, margin: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(RPA plan, IPA plan): rows with mat_id, split, nsites, family, in the order to compute them."""
    rng = np.random.default_rng(seed)
    left_out = both | refused
    pool = [dict(mat_id=e["data"]["mat_id"], formula=e["data"]["formula"], nsites=len(e["structure"]["sites"]),
                 split=split[e["data"]["mat_id"]], order=i)
            for i, e in enumerate(entries)
            if e["data"]["mat_id"] in split and e["data"]["mat_id"] not in left_out
            and e["data"]["band_gap_ind"] >= 0.5]
    for row in pool:
        row["family"] = family(row["mat_id"], row["formula"], azides_nitrates)
    have = Counter(split[m] for m in both if m in split)
    total = sum(RPA_SPLIT.values())
    # New materials per split: what brings the rung to the published proportions of the target, plus a margin
    # for the ones that fail (time limit, a gap that closes on GPAW's grid).
    want = {s: max(0, round(target * n / total) - have[s]) for s, n in RPA_SPLIT.items()}
    want = {s: math.ceil(w * (1 + margin)) for s, w in want.items()}
    chosen = []
    for s, n in want.items():
        rows = [r for r in pool if r["split"] == s]
        strata: dict[tuple, list[dict]] = {}
        for r in rows:
            strata.setdefault((r["nsites"], r["family"]), []).append(r)
        for key, k in allocate({key: len(v) for key, v in strata.items()}, n).items():
            picked = [strata[key][i] for i in rng.permutation(len(strata[key]))[:k]]
            # Interleave: each stratum's materials spread evenly over the list, so any prefix is proportional.
            for rank, r in enumerate(picked):
                chosen.append({**r, "key": (rank + rng.random()) / k})
    chosen.sort(key=lambda r: r["key"])
    not_ipa = {r["mat_id"] for r in chosen} | ipa_done
    ipa = sorted((r for r in pool if r["mat_id"] not in not_ipa), key=lambda r: (r["nsites"], r["order"]))
    return chosen, ipa


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(HERE / "alexandria_le6_structures.json.gz"))
    ap.add_argument("--target", type=int, default=1000, help="materials with the RPA rung in the end")
    ap.add_argument("--margin", type=float, default=0.06, help="extra share planned for failures")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    with gzip.open(args.input, "rt") as fh:
        entries = json.load(fh)["entries"]
    both = _ids(HERE / "progress") | {p.stem for p in (HERE / "runs" / "ladder" / "rpa").glob("*.json")}
    ipa_done = both | _ids(HERE / "progress_ipa") | _ids(HERE / "runs" / "ipa_rung")
    refused = _refused([HERE / "runs" / "ladder", HERE / "runs" / "ipa_rung"])
    azides_nitrates = set((HERE / "azides_nitrates.txt").read_text().split())
    rpa, ipa = plan(entries, published_split(), both, ipa_done, refused, azides_nitrates, args.target, args.margin)
    out = Path(args.out)
    atomic_write_text("".join(r["mat_id"] + "\n" for r in rpa), out / "rpa_plan.txt")
    atomic_write_text("".join(r["mat_id"] + "\n" for r in ipa), out / "ipa_plan.txt")
    print(f"RPA rung: {len(both)} done, {len(rpa)} planned (target {args.target}, margin {args.margin:.0%}); "
          f"IPA rung alone: {len(ipa_done - both)} done, {len(ipa)} planned; {len(refused)} refused before")
    print("RPA plan by split:", dict(Counter(r["split"] for r in rpa)))
    print("RPA plan by sites:", dict(sorted(Counter(r["nsites"] for r in rpa).items())))
    print("RPA plan by family:", dict(Counter(r["family"] for r in rpa).most_common()))
    print("first 100 by family:", dict(Counter(r["family"] for r in rpa[:100]).most_common()))


if __name__ == "__main__":
    main()
