"""Which materials to compute in RPA next: a ranked list for a high-throughput RPA workflow.

    python -m optimate_pl.uncertainty.next_rpa --model ENSEMBLE_DIR --acquisition disagreement [--top 200]
    python -m optimate_pl.uncertainty.next_rpa --model sc_model.ckpt --acquisition sc --candidates structures/

Candidates: by default the materials of the IPA database that have no RPA spectrum yet (of at most
``--max-sites`` sites, as the RPA database); or any input the prediction command reads (``--candidates``).
Acquisitions (:mod:`optimate_pl.uncertainty.acquisition`): ``disagreement`` (an ensemble folder: the expected SC
error of its mean), ``sc`` (an SC model: the lowest predicted SC[RPA;IPA], where RPA changes most),
``diversity`` (any model: k-center greedy in its latent space, away from the RPA materials already
computed), ``random``. The list (rank, mat_id, formula, nsites, score, reason) goes to ``--out``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .acquisition import ACQUISITIONS, k_center_greedy, pick_distances, select_random, select_top
from ..utils.atomic import atomic_write_text

log = logging.getLogger("optimate_pl")


def database_candidates(source: str, ipa_root: str | None, rpa_root: str | None, max_sites: int):
    """The IPA database's graphs without an RPA spectrum (at most ``max_sites`` sites), and the RPA materials."""
    from ..data import IPADataModule, RPADataModule
    from ..data.store import GraphDataset

    ipa = IPADataModule(source=source, root=ipa_root)
    rpa = RPADataModule(source=source, root=rpa_root, ipa_root=ipa_root)
    ipa.setup()
    rpa.setup()
    computed = set(rpa.store.mat_id)
    rows = [i for i, m in enumerate(ipa.store.mat_id) if m not in computed and int(ipa.store.nsites[i]) <= max_sites]
    return GraphDataset(ipa.store, rows, "eps_imag"), GraphDataset(rpa.store, range(len(rpa.store)), "eps_imag")


def computed_ids(source: str, exclude: str | None, pack: str | None = None) -> set[str]:
    """Materials that already have their RPA spectrum: ``exclude`` (a database folder or zip, or a file
    of ids) and, for ``source=gpaw``, the RPA materials of the packed ladder (``pack``, else the built-in one)."""
    out: set[str] = set()
    if source == "gpaw":
        from ..data.ladder import packed_dir, read_materials

        out |= {m["mat_id"] for m in read_materials(packed_dir(pack) if pack else None) if m["has_rpa"]}
    if exclude:
        path = Path(exclude).expanduser()
        if path.is_dir() or path.suffix == ".zip":
            from ..data.readers import list_sources

            out |= {Path(member or file).name[: -len(".json")] for file, member in list_sources(path)}
        else:
            from ..dft.compute import read_ids

            out |= set(read_ids(path))
    return out


def input_candidates(path: str, cutoff: float, skip: set[str] = frozenset()) -> tuple[list[dict[str, Any]], list]:
    """Featurised structures of any prediction input, less those in ``skip``: (identities, arrays)."""
    from ..data.inputs import Featurised, featurise_items, iter_inputs

    ids, arrays = [], []
    items = [it for it in iter_inputs(path, recursive=True) if it.id not in skip]
    for f in featurise_items(items, cutoff, 0.5):
        if isinstance(f, Featurised):
            ids.append({"mat_id": f.id, "formula": f.formula, "nsites": len(f.arrays[0])})
            arrays.append(f.arrays)
    return ids, arrays


@torch.no_grad()
def _batches(model, batches, what: str) -> torch.Tensor:
    parts = []
    for b in batches:
        if what == "latents":
            parts.append(model.net.latents(b))
        elif what == "uncertainty":
            parts.append(model.uncertainty(b)["expected_sc_error"])
        else:
            parts.append(model(b)[:, 0])
    return torch.cat(parts)


def rank(model, acquisition: str, candidate_batches: list, reference_batches: list, n: int, top: int,
         seed: int = 0) -> tuple[list[int], np.ndarray, list[str]]:
    """Positions of the ``top`` candidates, their scores and the reasons, best first."""
    if acquisition == "disagreement":
        if model.calibration is None:
            raise ValueError("--acquisition disagreement needs an ensemble folder (ensemble.size=5), not one model")
        scores = _batches(model, candidate_batches, "uncertainty").numpy()
        picks = select_top(scores, top)
        return picks, scores[picks], [f"the ensemble disagrees: expected SC error {scores[i]:.3f}" for i in picks]
    if acquisition == "sc":
        if not model.is_sc_model:
            raise ValueError("--acquisition sc needs an SC[RPA;IPA] model (strategy=sc)")
        scores = 1.0 - _batches(model, candidate_batches, "sc").numpy()
        picks = select_top(scores, top)
        return picks, scores[picks], [f"predicted SC[RPA;IPA] {1 - scores[i]:.3f}: RPA changes it most" for i in picks]
    if acquisition == "diversity":
        pool = _batches(model, candidate_batches, "latents")
        seen = _batches(model, reference_batches, "latents") if reference_batches else pool[:0]
        picks = k_center_greedy(pool, seen, top)
        scores = pick_distances(pool, seen, picks)
        return picks, scores, ["far from everything computed or picked before it (latent distance "
                               f"{s:.2f})" for s in scores]
    if acquisition == "random":
        picks = select_random(n, top, seed)
        return picks, np.zeros(len(picks)), ["a random draw (the paper's protocol)"] * len(picks)
    raise ValueError(f"unknown acquisition {acquisition!r}; choose from {', '.join(ACQUISITIONS)}")


def trained_source(info: dict) -> str:
    """The ``data.source`` a loaded model was trained on (``Predictor.info``, from its hparams or model card,
    ensembles included); the command's default, the built-in GPAW ladder, where it is unknown (published weights)."""
    source = info.get("data_source")
    return "gpaw" if source in (None, "unknown") else str(source)


def next_rpa(model_path: str, acquisition: str, out: str, top: int = 100, candidates: str | None = None,
             source: str | None = None, ipa_root: str | None = None, rpa_root: str | None = None,
             max_sites: int = 8, batch_size: int = 256, exclude: str | None = None) -> pd.DataFrame:
    """Rank the candidates (see the module docstring) and write the list; returns it. ``source``: the database
    of the candidates and of what is computed; ``None``: the one the model was trained on (:func:`trained_source`)."""
    from ..data.batching import batch_from_arrays
    from ..inference.predictor import load_model

    model = load_model(model_path)
    source = source or trained_source(model.info)
    if source == "gpaw":  # a packed ladder other than the built-in one: the one given, else the model's own
        ipa_root = rpa_root = ipa_root or rpa_root or model.info.get("data_root")
    if candidates:
        ids, arrays = input_candidates(candidates, model.cutoff, computed_ids(source, exclude, ipa_root))
        cand = [batch_from_arrays(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)]
        ref: list = []
        if acquisition == "diversity":  # away from what is computed: the RPA materials of the model's database
            try:
                ref = list(database_candidates(source, ipa_root, rpa_root, max_sites)[1].batches(batch_size))
            except (ValueError, FileNotFoundError) as err:
                log.warning("--acquisition diversity: the RPA materials of data.source=%s could not be read (%s): the "
                            "candidates are spread among themselves only", source, err)
    else:
        pool, computed = database_candidates(source, ipa_root, rpa_root, max_sites)
        ids = [{"mat_id": pool.store.mat_id[i], "formula": pool.store.formula[i], "nsites": int(pool.store.nsites[i])}
               for i in pool.rows.tolist()]
        cand, ref = list(pool.batches(batch_size)), list(computed.batches(batch_size))
    if not ids:
        raise ValueError("no candidate material (nothing without an RPA spectrum, or no readable structure)")
    picks, scores, reasons = rank(model, acquisition, cand, ref, len(ids), top)
    table = pd.DataFrame([{"rank": r + 1, **ids[i], "score": float(s), "reason": why}
                          for r, (i, s, why) in enumerate(zip(picks, scores, reasons))])
    atomic_write_text(table.to_csv(index=False), Path(out))
    return table


def main(argv: list[str] | None = None) -> None:
    from ..utils.tool import positive_int, run_tool, tool_parser

    p = tool_parser("python -m optimate_pl.uncertainty.next_rpa", "Rank the materials to compute in RPA next.")
    p.add_argument("--model", required=True, help="an ensemble folder, an SC model or any checkpoint")
    p.add_argument("--acquisition", required=True, choices=ACQUISITIONS)
    p.add_argument("--top", type=positive_int, default=100)
    p.add_argument("--candidates", default=None, help="structures to rank (default: the IPA database without RPA)")
    p.add_argument("--source", default=None, choices=["gpaw", "synthetic", "figshare"],
                   help="the candidates' database (default: the one the model was trained on, from its card)")
    p.add_argument("--exclude", default=None, help="materials already computed: a database folder/zip or a file "
                   "of ids (source=gpaw always leaves out its ladder's)")
    p.add_argument("--ipa-root", default=None, help="figshare: the IPA database; gpaw: a packed ladder (default: the "
                   "one the model was trained on, data.root, else the built-in one)")
    p.add_argument("--rpa-root", default=None, help="figshare: the RPA database")
    p.add_argument("--max-sites", type=positive_int, default=8, help="the RPA database's limit on sites")
    p.add_argument("--out", default="next_rpa.csv")
    args = p.parse_args(argv)
    table = run_tool(lambda: next_rpa(args.model, args.acquisition, args.out, args.top, args.candidates, args.source,
                                      args.ipa_root, args.rpa_root, args.max_sites, exclude=args.exclude), args)
    print(table.head(10).to_string(index=False))
    print(f"wrote {len(table)} ranked candidates to {args.out}; compute their RPA spectra with\n"
          f"  optimate-pl-compute input=STRUCTURES output=DIR ids={args.out}")


if __name__ == "__main__":
    main()
