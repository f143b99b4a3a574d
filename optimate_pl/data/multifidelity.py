"""Both rungs in one training set, for ``strategy=mf`` (multi-fidelity learning).

The network learns the IPA spectra of every IPA training material and the RPA spectra of the RPA
training subset at once, each sample tagged with its rung (``fidelity``: 0 IPA, 1 RPA; the module adds a
learned embedding of it, :class:`~optimate_pl.models.module.SpectraModule`). Validation and test are
the RPA rung's, as for DL and TL. The paper's leakage rule holds by construction and is checked: the
IPA spectra trained on are those of the IPA training split, and no RPA validation or test material is
among them.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from .datamodule import RPADataModule
from .splits import apply_split, formula_split
from .store import GraphDataset, GraphStore

log = logging.getLogger(__name__)

#: The rung of each training sample (``batch.fidelity``); validation, test and prediction are RPA.
IPA, RPA = 0, 1


def merge_rungs(ipa: GraphStore, ipa_rows: list[int], rpa: GraphStore, rpa_rows: list[int]) -> GraphStore:
    """One store of ``ipa_rows`` of the IPA store (their IPA spectra) and ``rpa_rows`` of the RPA store (their RPA
    spectra), with ``fidelity`` 0 / 1; a material in both appears twice, once per rung."""
    graphs = [ipa.arrays(i) for i in ipa_rows] + [rpa.arrays(i) for i in rpa_rows]
    spectra = np.concatenate([ipa.spectrum[ipa_rows].numpy(), rpa.spectrum[rpa_rows].numpy()])
    store = GraphStore.from_graphs(graphs, spectra, [ipa.mat_id[i] for i in ipa_rows] + [rpa.mat_id[i] for i in rpa_rows],
                                   [ipa.formula[i] for i in ipa_rows] + [rpa.formula[i] for i in rpa_rows])
    store.fidelity = torch.cat([torch.full((len(ipa_rows),), IPA), torch.full((len(rpa_rows),), RPA)])
    if ipa.volume is not None and rpa.volume is not None:
        store.volume = torch.cat([ipa.volume[ipa_rows], rpa.volume[rpa_rows]])
    return store


class MultiFidelityDataModule(RPADataModule):
    """The RPA data module whose training loader also serves the IPA training split's IPA spectra.

    ``train_set`` stays the RPA training materials (what ``n_train``, ``data.subset`` and the training-set
    metrics mean); ``fit_set`` is what the network is fitted on: the IPA training split plus ``train_set``.
    Spectra targets only (``data.target=eps_imag``).

    ``rpa_repeat``: how many times each RPA training spectrum is in ``fit_set`` (an epoch sees it that often).
    With 100 RPA spectra beside 820 IPA ones (the built-in v6) the expensive rung is a ninth of every epoch; repeating
    it weighs the rung the model is tested on more (the cost of an epoch grows by the repeats).
    """

    def __init__(self, *args, rpa_repeat: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.target != "eps_imag":
            raise ValueError("strategy=mf learns spectra of both rungs: data.target must be eps_imag")
        if isinstance(rpa_repeat, bool) or not isinstance(rpa_repeat, int) or rpa_repeat < 1:
            raise ValueError(f"data.rpa_repeat={rpa_repeat!r}: how often each RPA training spectrum is in an epoch "
                             f"(a whole number, at least 1)")
        self.rpa_repeat = rpa_repeat
        self.fit_set: GraphDataset | None = None

    def ipa_assignment(self, ipa: GraphStore, meta: dict) -> tuple[dict[str, str], str]:
        """``mat_id -> split`` of the IPA database: the split the RPA materials inherit (formula: computed on it)."""
        if self.split_mode == "formula":
            return formula_split(ipa.mat_id, ipa.formula, self.seed), f"the authors' formula split, seed {self.seed}"
        return self.split_assignment(ipa, meta, kind="ipa")  # auto: over both rungs, as the RPA module's

    def prepare_data(self) -> None:
        super().prepare_data()
        self.cache_path("ipa")

    def setup(self, stage: str | None = None) -> None:
        if self.fit_set is not None:
            return
        super().setup(stage)
        ipa, meta = self.load_rung("ipa")
        assignment, origin = self.ipa_assignment(ipa, meta)
        rows, unknown = apply_split(ipa.mat_id, assignment)
        if unknown:
            log.warning("strategy=mf: %d IPA materials are in no split and are left out (e.g. %s; %s)", len(unknown),
                        ", ".join(unknown[:3]), origin)
        held_out = set(self.val_set.mat_ids) | set(self.test_set.mat_ids)
        leaked = [m for m in (ipa.mat_id[i] for i in rows["train"]) if m in held_out]
        if leaked:  # the splits disagree: training on these IPA spectra would see validation/test materials
            raise ValueError(f"strategy=mf: {len(leaked)} IPA training materials are RPA validation/test materials "
                             f"(e.g. {leaked[0]}); the IPA and RPA splits must agree ({origin})")
        merged = merge_rungs(ipa, rows["train"], self.store, self.train_set.rows.tolist() * self.rpa_repeat)
        self.fit_set = GraphDataset(merged, range(len(merged)), "eps_imag")
        log.info("MF data: fitting on %d IPA spectra (the IPA training split) and %d RPA spectra%s", len(rows["train"]),
                 len(self.train_set), f", each {self.rpa_repeat} times an epoch" if self.rpa_repeat > 1 else "")

    def describe(self) -> dict:
        out = super().describe()
        out["ipa_train"] = int((self.fit_set.store.fidelity == IPA).sum()) if self.fit_set is not None else None
        out["rpa_repeat"] = self.rpa_repeat
        return out

    def train_dataloader(self):
        drop = self.drop_last and len(self.fit_set) > self.batch_size
        return self._loader(self.fit_set, self.batch_size, shuffle=True, drop_last=drop, pad=True)
