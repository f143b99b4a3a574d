"""How large is a trained model's Im ε below the DFT absorption onset? The number that sets ``optics.ONSET_FLOOR``.

A network never predicts an exact zero: below the gap its Im ε wiggles around a small positive level. Onsets and
band-averaged scalars taken from the raw prediction follow that noise (an onset at 0.2 eV for MgF2, whose DFT gap
is 7 eV; a visible absorption of thousands of 1/cm for a transparent crystal). This script measures, on the
built-in GPAW ladder's test materials (real DFT spectra, never trained on), the model's Im ε where the DFT
spectrum is below 1 % of its maximum:

    python experiments/optics_noise/measure.py CHECKPOINT [--kind ipa|rpa] [--out experiments/optics_noise]

and writes ``below_gap_<kind>.md``: the distribution over materials of the largest predicted value there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def measure(checkpoint: str, kind: str) -> dict:
    from optimate_pl.data import IPADataModule, RPADataModule
    from optimate_pl.inference.predictor import load_model
    from optimate_pl.spectra import optics
    from optimate_pl.spectra.grid import ENERGY_GRID

    dm = (IPADataModule if kind == "ipa" else RPADataModule)(source="gpaw")
    dm.setup()
    model = load_model(checkpoint)
    graphs = [dm.test_set[i] for i in range(len(dm.test_set))]
    pred = model.predict_graphs(graphs)
    dft = dm.test_set.targets.numpy()
    worst, typical, far, dft_onset, raw_onset, robust_onset = [], [], [], [], [], []
    for p, y in zip(pred, dft):
        below = y < optics.ONSET_FRACTION * y.max()
        first_above = int(np.argmax(~below))
        region = np.arange(len(y)) < first_above  # below the DFT onset
        if region.sum() < 5:
            continue
        worst.append(float(np.abs(p[region]).max()))
        typical.append(float(np.median(np.abs(p[region]))))
        deep = ENERGY_GRID < ENERGY_GRID[first_above] - 1.0  # more than 1 eV below: noise, not a shifted edge
        far.append(float(np.abs(p[deep]).max()) if deep.any() else float("nan"))
        dft_onset.append(float(ENERGY_GRID[first_above]))
        above = p >= optics.ONSET_FRACTION * p.max()
        raw_onset.append(float(ENERGY_GRID[int(np.argmax(above))]))
        robust_onset.append(float(optics.scalars(p[None])["onset_eV"][0]))
    return {"n": len(worst), "worst": np.array(worst), "typical": np.array(typical), "far": np.array(far),
            "dft_onset": np.array(dft_onset), "raw_onset": np.array(raw_onset), "robust_onset": np.array(robust_onset)}


def main() -> None:
    from optimate_pl.spectra import optics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--kind", default="ipa", choices=["ipa", "rpa"])
    ap.add_argument("--out", default=str(Path(__file__).parent))
    args = ap.parse_args()
    r = measure(args.checkpoint, args.kind)
    q = (50, 90, 95, 100)
    err_raw = np.abs(r["raw_onset"] - r["dft_onset"])
    err_rob = np.abs(r["robust_onset"] - r["dft_onset"])
    lines = [f"# The model's Im ε below the DFT onset ({args.kind.upper()}, {r['n']} test materials of the built-in "
             f"GPAW ladder)", "", f"Checkpoint: `{args.checkpoint}`", "",
             "| quantity over materials | " + " | ".join(f"{p}th pct" for p in q) + " |",
             "|---|" + "---|" * len(q),
             "| largest predicted Im ε below the DFT onset | " + " | ".join(f"{np.percentile(r['worst'], p):.3f}" for p in q) + " |",
             "| largest predicted Im ε more than 1 eV below the DFT onset | " + " | ".join(
                 f"{np.nanpercentile(r['far'], p):.3f}" for p in q) + " |",
             "| median predicted Im ε below the DFT onset | " + " | ".join(f"{np.percentile(r['typical'], p):.3f}" for p in q) + " |",
             "| onset error, 1 % of the peak (raw) (eV) | " + " | ".join(f"{np.percentile(err_raw, p):.2f}" for p in q) + " |",
             f"| onset error, optics.scalars (floor {optics.ONSET_FLOOR}, {optics.ONSET_SPAN_EV} eV sustained) (eV) | "
             + " | ".join(f"{np.percentile(err_rob, p):.2f}" for p in q) + " |", ""]
    out = Path(args.out) / f"below_gap_{args.kind}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
