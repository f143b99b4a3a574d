"""LightningModule around OPTIMATE: L1 loss, Adam, SC/MSE/MAE metrics, IPA baseline, per-material results."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import hydra.utils
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from ..atomic import atomic_write_text
from ..metrics import AbsoluteError, SimilarityCoefficient, SpectralMAE, SpectralMSE, median
from .optimate import Optimate

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 0.0}


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; stopped before any checkpoint holds NaN weights."""


class SpectraModule(pl.LightningModule):
    """Trains :class:`Optimate` on spectra (``target="eps_imag"``) or on the scalar SC[RPA;IPA].

    Args:
        net: keyword arguments of :class:`Optimate` (plain numbers, so ``load_from_checkpoint``
            needs nothing else).
        optimizer: a Hydra-instantiable dict (``_target_`` plus arguments), default Adam.
        scheduler: optional Hydra-instantiable dict; ``monitor``/``interval`` keys go to Lightning.
        target: ``eps_imag`` or ``sc_rpa_ipa``.
    """

    def __init__(self, net: dict | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 target: str = "eps_imag") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = Optimate(**(net or {}))
        self.target = target
        self.spectral = target == "eps_imag"
        if self.spectral:
            self.val_sc, self.val_mse = SimilarityCoefficient(), SpectralMSE()
            self.test_sc, self.test_mse, self.test_mae = SimilarityCoefficient(), SpectralMSE(), SpectralMAE()
            self.base_sc, self.base_mse = SimilarityCoefficient(), SpectralMSE()
        else:
            self.val_ae, self.test_ae = AbsoluteError(), AbsoluteError()
        self.test_rows: list[dict[str, Any]] = []

    def forward(self, batch) -> Tensor:
        return self.model(batch)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = F.l1_loss(self(batch), batch.y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, step {self.global_step}: "
                f"training diverged; lower the learning rate (optimizer.lr) or check the data")
        self.log("train/loss", loss, batch_size=batch.num_graphs, on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        pred = self(batch).float()
        self.log("val/loss", F.l1_loss(pred, batch.y), batch_size=batch.num_graphs, prog_bar=True, sync_dist=True)
        if self.spectral:
            self.val_sc.update(pred, batch.y)
            self.val_mse.update(pred, batch.y)
            self.log("val/sc_median", self.val_sc, batch_size=batch.num_graphs, prog_bar=True)
            self.log("val/mse_median", self.val_mse, batch_size=batch.num_graphs)
        else:
            self.val_ae.update(pred, batch.y)
            self.log("val/ae_median", self.val_ae, batch_size=batch.num_graphs, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        # The final evaluation in fp32 whatever the training precision, as the authors evaluated
        # (bf16-mixed keeps fp32 master weights, so leaving autocast gives the fp32 network).
        with torch.autocast(self.device.type, enabled=False):
            pred = self(batch).float()
        rows = {"mat_id": list(batch.mat_id), "formula": list(batch.formula), "nsites": batch.nsites.tolist()}
        if self.spectral:
            for m, v in ((self.test_sc, "sc"), (self.test_mse, "mse"), (self.test_mae, "mae")):
                rows[v] = m.per_sample(pred, batch.y).tolist()
                m.update(pred, batch.y)
            if getattr(batch, "ipa", None) is not None:
                # The IPA baseline: SC[IPA; RPA] (RPA is the reference) on the same materials.
                rows["ipa_sc"] = self.base_sc.per_sample(batch.ipa, batch.y).tolist()
                rows["ipa_mse"] = self.base_mse.per_sample(batch.ipa, batch.y).tolist()
                self.base_sc.update(batch.ipa, batch.y)
                self.base_mse.update(batch.ipa, batch.y)
        else:
            rows["true"] = batch.y.reshape(-1).tolist()
            rows["pred"] = pred.reshape(-1).tolist()
            rows["abs_error"] = self.test_ae.per_sample(pred, batch.y).tolist()
            self.test_ae.update(pred, batch.y)
        keys = list(rows)
        self.test_rows.extend(dict(zip(keys, vals)) for vals in zip(*rows.values()))

    def on_test_epoch_start(self) -> None:
        self.test_rows = []

    def on_test_epoch_end(self) -> None:
        if self.spectral:
            logs = {"test/sc_median": self.test_sc.compute(), "test/mse_median": self.test_mse.compute(),
                    "test/mae_median": self.test_mae.compute(), "test/sc_mean": self.test_sc.samples().mean()}
            if self.base_sc.values:
                logs["test/ipa_sc_median"] = self.base_sc.compute()
                logs["test/ipa_mse_median"] = self.base_mse.compute()
        else:
            errors = self.test_ae.compute()
            logs = {"test/ae_median": errors, "test/ae_mean": self.test_ae.samples().mean()}
        self.log_dict({k: float(v) for k, v in logs.items()}, sync_dist=False)
        for m in self._test_metrics():
            m.reset()
        # Per-material rows from every process, so rank 0 can write the whole table.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, self.test_rows)
            self.test_rows = [r for part in gathered for r in part]

    def _test_metrics(self) -> list:
        if self.spectral:
            return [self.test_sc, self.test_mse, self.test_mae, self.base_sc, self.base_mse]
        return [self.test_ae]

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"mat_id": [...], "pred": Tensor [B, out_dim]}``."""
        return {"mat_id": list(batch.mat_id), "pred": self(batch).float().cpu()}

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer or DEFAULT_OPTIMIZER)
        optimizer = hydra.utils.instantiate(opt_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = dict(self.hparams.scheduler)
        lightning_keys = {k: sched_cfg.pop(k) for k in ("monitor", "interval", "frequency") if k in sched_cfg}
        scheduler = hydra.utils.instantiate(sched_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}


def write_results_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write per-material test results (one row a material) atomically as CSV."""
    import io

    path = Path(path)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(buf.getvalue(), path)
    return path


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Medians (and means) of the per-material columns, as the paper reports them."""
    out = {}
    for key in ("sc", "mse", "mae", "ipa_sc", "ipa_mse", "abs_error"):
        if rows and key in rows[0]:
            vals = torch.tensor([r[key] for r in rows], dtype=torch.float64)
            out[f"{key}_median"] = float(median(vals))
            out[f"{key}_mean"] = float(vals.mean())
    return out
