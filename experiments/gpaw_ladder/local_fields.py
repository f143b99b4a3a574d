"""How many G-vectors do the local fields of the RPA rung need? (issue #37, item 4)

At the 30 eV local-field cutoff a small cell with short lattice vectors keeps 1-9 G-vectors: for c-BN and BeO
(1 G-vector) the RPA rung is the IPA one exactly, and the half-cutoff check (``rpa_similarity``) is blind to it.
This script recomputes materials of the built-in ladder at several local-field cutoffs and compares each RPA
spectrum with the one at the largest cutoff (GPAW-computed, the ladder's other settings unchanged):

    python experiments/gpaw_ladder/local_fields.py [--ids ...] [--cutoffs 30 60 100 200] [--workers 2]

writes ``results/local_fields.csv`` (one row a material and cutoff: n_G, SC against the reference, SC of RPA
against IPA, core-seconds) and prints the table.
"""
from __future__ import annotations

import argparse
import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
#: The shipped RPA materials with the fewest G-vectors at 30 eV (1-9), 2-4-site cells.
DEFAULT_IDS = ["agm003157414", "agm003157736", "agm002069746", "agm003157614", "agm003185714", "agm004449502",
               "agm002176626", "agm003157770", "agm003273599", "agm003157621"]


def main() -> None:
    from pymatgen.core import Structure

    from optimate_pl.data import ladder
    from optimate_pl.dft.runner import run_material
    from optimate_pl.dft.settings import LadderSettings
    from optimate_pl.spectra.metrics import similarity_coefficient

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", nargs="*", default=DEFAULT_IDS)
    ap.add_argument("--cutoffs", nargs="*", type=float, default=[30.0, 60.0, 100.0, 200.0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "local_fields.csv"))
    args = ap.parse_args()
    packed = {m["mat_id"]: m for m in json.loads(gzip.decompress((ladder.builtin_dir() / "materials.json.gz").read_bytes()))}
    jobs = [(i, c) for i in args.ids for c in args.cutoffs]

    def one(job):
        mat_id, cut = job
        structure = Structure.from_dict(packed[mat_id]["structure"])
        r = run_material(structure, replace(LadderSettings(), response_cutoff_eV=cut), "both", nice=15)
        return mat_id, cut, r

    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(one, jobs))
    rows = []
    import torch

    for mat_id in args.ids:
        mine = {c: r for m, c, r in results if m == mat_id}
        ref = mine[max(args.cutoffs)]
        trace = lambda e: torch.tensor(e.imag.mean(0))[None]  # noqa: E731
        for cut, r in sorted(mine.items()):
            rows.append({"mat_id": mat_id, "formula": packed[mat_id]["data"].get("formula"),
                         "sites": len(packed[mat_id]["structure"]["sites"]), "cutoff_eV": cut,
                         "n_G": r.info.get("n_G"),
                         "sc_vs_reference": float(similarity_coefficient(trace(r.rpa), trace(ref.rpa))),
                         "sc_rpa_vs_ipa": float(similarity_coefficient(trace(r.rpa), trace(r.ipa))),
                         "core_s": round(float(r.core_seconds), 1)})
    import pandas as pd

    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
