"""Does a larger IPA rung help TL? TL on the snapshot's RPA rung started from IPA models pretrained on the snapshot's
730 IPA training materials (runs/) against the same TL started from the built-in v5 ones (396; runs_ipa396/), and
both against DL, per training-set size: paired bootstrap intervals on the same test materials (each material
averaged over seeds), with the backbone report's own interval function.

    python experiments/gpaw_ladder/snapshot_study/ipa_rung_size.py      # writes results/ipa_rung_size.{md,csv}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from optimate_pl.studies.backbones import compare_cells
from optimate_pl.studies.output import write_table
from optimate_pl.studies.runs import data_statement, load_runs

HERE = Path(__file__).resolve().parent


def cells(folder: Path) -> dict[tuple[str, int], list]:
    """The finished OPTIMATE runs of a folder by (strategy, training materials)."""
    out: dict[tuple[str, int], list] = {}
    for r in load_runs(folder):
        if r.results is not None:
            out.setdefault((r.strategy, r.n_train), []).append(r)
    return out


def main() -> None:
    big, small = cells(HERE / "runs"), cells(HERE / "runs_ipa396")
    rows = []
    for n in sorted({n for (s, n) in small if s == "tl"}):
        tl730, tl396, dl = big.get(("tl", n)), small[("tl", n)], big.get(("dl", n))
        if not tl730:
            continue
        row = {"train_size": n, "seeds": f"{len(tl730)}/{len(tl396)}",
               "tl_ipa730": np.mean([r.metrics["test/sc_median"] for r in tl730]),
               "tl_ipa396": np.mean([r.metrics["test/sc_median"] for r in tl396])}
        row["diff"], row["ci_low"], row["ci_high"] = compare_cells(tl730, tl396, "730 against 396 IPA materials")
        if dl:
            row["dl"] = np.mean([r.metrics["test/sc_median"] for r in dl])
            for name, runs in (("tl_ipa730_vs_dl", tl730), ("tl_ipa396_vs_dl", tl396)):
                d, lo, hi = compare_cells(runs, dl, "against DL")
                row[name] = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        rows.append(row)
    statement = data_statement([r for rs in big.values() for r in rs])
    note = ("Mean over seeds of each run's median test SC. tl_ipa730: TL from IPA models pretrained on the snapshot's "
            "730 IPA training materials; tl_ipa396: the same TL (same RPA training materials, recipe and seeds) from "
            "the built-in v5's IPA models (396); diff [ci_low, ci_high]: tl_ipa730 - tl_ipa396, difference of the "
            "medians over the test materials (each averaged over seeds), paired bootstrap 95 % interval; *_vs_dl: "
            "the same against DL.")
    for path in write_table(pd.DataFrame(rows), HERE / "results", "ipa_rung_size", statement, note):
        print(path)


if __name__ == "__main__":
    main()
