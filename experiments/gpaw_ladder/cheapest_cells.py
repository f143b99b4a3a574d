"""The not-yet-computed cells of one size, cheapest first by a cost fit: an ``ids=`` list for the compute command.

The cost of a 4-site cell spans 12-650 core-s: what the size order computes next is a lottery. A fit of
log(core-s) on log(symmetry operations), log(electrons) and log(volume) over the computed cells of that size
(session 7: 34 cells, correlation 0.87 in log space) ranks the rest; its cheapest 39 then cost 28 core-s at
the median (36 on average) against 148 for the size order's 4-site cells. The selection favours small,
symmetric cells: say so wherever the dataset's composition matters. It reads the input and the run folder as
the compute command does (``iter_inputs``, ``select``: the same gap filter, done and failed materials left
out), and fits the costs recorded in the folder's RPA entries.

    python experiments/gpaw_ladder/cheapest_cells.py --sites 4 --count 60 > ids.txt
    optimate-pl-compute input=... output=experiments/gpaw_ladder/runs/ladder ids=ids.txt workers=2
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from optimate_pl.dft.compute import ComputeOptions, Workdir, select
from optimate_pl.data.inputs import iter_inputs, read_structure
from optimate_pl.utils.tool import positive_int

HERE = Path(__file__).parent


def features(structure: Structure) -> list[float]:
    """1, log(symmetry operations at 0.1 Å), log(electrons), log(volume): what the cost fit uses."""
    try:
        n_ops = len(SpacegroupAnalyzer(structure, symprec=0.1).get_symmetry_operations())
    except Exception:  # spglib gives up on a few distorted cells: count them as without symmetry
        n_ops = 1
    electrons = sum(site.specie.Z for site in structure)
    return [1.0, math.log(n_ops), math.log(electrons), math.log(structure.volume)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(HERE / "alexandria_le6_structures.json.gz"))
    parser.add_argument("--output", default=str(HERE / "runs" / "ladder"),
                        help="the compute command's output folder: what is done, and the costs to fit")
    parser.add_argument("--sites", type=positive_int, default=4)
    parser.add_argument("--count", type=positive_int, default=60)
    args = parser.parse_args(argv)

    opts = ComputeOptions(input=args.input, output=args.output, max_sites=args.sites)
    workdir = Workdir(opts.output, opts.level)
    cells = {it.id: (it, read_structure(it)) for it in iter_inputs(opts.input)}
    cells = {k: v for k, v in cells.items() if len(v[1]) == args.sites}
    fitted = []
    for mat_id, (_, structure) in cells.items():
        entry = workdir.entry_path(mat_id)
        if entry.is_file():
            seconds = json.loads(entry.read_text())["parameters"]["core_seconds"]["total"]
            fitted.append((features(structure), math.log(seconds)))
    todo, _ = select((it for it, _ in cells.values()), opts, workdir)
    todo = [(it.id, features(cells[it.id][1])) for it in todo]
    if len(fitted) < 8:
        sys.exit(f"only {len(fitted)} computed cells of {args.sites} sites in {args.output}: too few to fit costs "
                 f"(restore the packed ladder there first: python -m optimate_pl.data.ladder restore ...)")
    x, y = np.array([f for f, _ in fitted]), np.array([c for _, c in fitted])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    corr = np.corrcoef(x @ coef, y)[0, 1]
    todo.sort(key=lambda t: float(np.dot(coef, t[1])))
    chosen = todo[:args.count]
    predicted = [math.exp(float(np.dot(coef, f))) for _, f in chosen]
    print(f"cost fit on {len(fitted)} computed {args.sites}-site cells (log-space correlation {corr:.2f}); "
          f"{len(todo)} to do; the {len(chosen)} cheapest: predicted {sum(predicted):.0f} core-s in all",
          file=sys.stderr)
    print("\n".join(mat_id for mat_id, _ in chosen))


if __name__ == "__main__":
    main()
