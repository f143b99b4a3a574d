"""LightningModule around OPTIMATE: the target's loss and metrics, Adam, the IPA baseline, per-material results."""
from __future__ import annotations

from typing import Any

import hydra.utils
import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..data.padding import real_graphs
from .backbones import make_network
from .masking import masked_loss
from .readout import readout
from .targets import target as describe_target

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 0.0}
#: Optimisers given ``fused=True`` on the devices of :data:`FUSED_DEVICES` unless the config chooses
#: ``fused``/``foreach`` itself.
FUSED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW")
FUSED_DEVICES = ("cpu", "cuda")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/inf loss; stopped before any checkpoint holds NaN weights."""


class SpectraModule(pl.LightningModule):
    """Trains a backbone (:class:`Optimate` by default) on a target of :mod:`optimate_pl.models.targets`.

    Args:
        net: keyword arguments of :class:`Optimate`, or of another backbone named by ``_target_`` (plain
            numbers and the class path, so ``load_from_checkpoint`` and a weight file need nothing else;
            :func:`~optimate_pl.models.backbones.make_network`).
        optimizer: a Hydra-instantiable dict (``_target_`` plus arguments), default Adam.
        scheduler: optional Hydra-instantiable dict; ``monitor``/``interval`` keys go to Lightning.
        target: ``eps_imag`` (spectra) or ``sc_rpa_ipa`` (the scalar SC[RPA;IPA]).
        data: what the model is trained on (source, fingerprint, cutoff, split, sizes): saved with
            the hyperparameters in every checkpoint, so that a loaded model knows its provenance.
        name: the architecture's name (the ``model`` config: ``ipa``, ``dl_300``, ...), for the record.
        search: the scalars a searched architecture's ``net`` was built from (``model=dl_search``), for the record.
        multi_fidelity: ``strategy=mf``: a learned embedding of each sample's rung (``batch.fidelity``: 0 IPA,
            1 RPA; RPA where a batch has none) is added to the pooled material vector before the readout MLP.
            A weight file folds the RPA embedding into that MLP's first bias, so it loads as the plain network
            of the RPA rung (:func:`~optimate_pl.models.weights.read_weights`).

    The ``model`` config group instantiates it (``_target_``); ``optimizer`` and ``scheduler`` come from
    their own groups.
    """

    def __init__(self, net: dict | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 target: str = "eps_imag", data: dict | None = None, name: str | None = None,
                 search: dict | None = None, multi_fidelity: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = make_network(net)
        if multi_fidelity:
            if not (hasattr(self.model, "latents") and hasattr(self.model, "mlp1")):
                raise ValueError(f"strategy=mf needs a backbone with latents() and the mlp1 readout; "
                                 f"{type(self.model).__name__} has not")
            self.fidelity = nn.Embedding(2, self.model.mlp1.channel_list[0])
            nn.init.zeros_(self.fidelity.weight)  # starts as the plain network; the rungs' offsets are learned
        self.spec = describe_target(target)
        self.val_metrics = nn.ModuleDict({k: self.spec.score(k).metric() for k in self.spec.validated})
        self.test_metrics = nn.ModuleDict({s.key: s.metric() for s in self.spec.scores})
        self.base_metrics = nn.ModuleDict({k: self.spec.score(k).metric() for k in self.spec.baseline})
        self.test_rows: list[dict[str, Any]] = []
        self._first_bad: Tensor | None = None  # [step, loss] of the first non-finite loss since the last check

    def forward(self, batch) -> Tensor:
        if not self.hparams.get("multi_fidelity"):
            return self.model(batch)
        fidelity = getattr(batch, "fidelity", None)
        latents = self.model.latents(batch)
        if fidelity is None:  # validation, test, prediction: the RPA rung
            fidelity = torch.ones(latents.size(0), dtype=torch.long, device=latents.device)
        return readout(self.model.mlp1, latents + self.fidelity(fidelity), batch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the precision the run trains in: a resume in another one is warned about."""
        if self._trainer is not None:
            checkpoint["precision"] = str(self.trainer.precision)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss = masked_loss(self.spec.loss, self(batch), batch.y, getattr(batch, "graph_mask", None))
        # The guard against divergence reads nothing on the host here (a device sync every step on a GPU): the
        # first non-finite loss and its step are kept on the device and checked before each validation and at
        # each epoch's end (check_finite_loss), so no checkpoint ever holds the diverged weights.
        bad = ~torch.isfinite(loss.detach())
        value = loss.detach().float()
        first = self._first_bad if self._first_bad is not None else value.new_full((2,), float("nan"))
        step = value.new_full((), float(self.global_step))  # a fill kernel, not a host-to-device copy
        self._first_bad = torch.where(bad & first[0].isnan(), torch.stack([step, value]), first)
        self.log("train/loss", loss, batch_size=real_graphs(batch), on_step=False, on_epoch=True, prog_bar=True,
                 sync_dist=True)
        return loss

    def check_finite_loss(self) -> None:
        """Raise :class:`NonFiniteLossError` if a training step of this epoch had a NaN/inf loss (one host read)."""
        first, self._first_bad = self._first_bad, None
        if first is None:
            return
        step, value = first.tolist()
        if step == step:  # not NaN: a step diverged
            raise NonFiniteLossError(
                f"non-finite training loss ({value}) at epoch {self.current_epoch}, step {int(step)}: training "
                f"diverged; lower the learning rate (optimizer.lr) or check the data")

    def on_validation_epoch_start(self) -> None:
        self.check_finite_loss()  # before validation, so before any checkpoint of this epoch

    def on_train_epoch_end(self) -> None:
        self.check_finite_loss()

    def validation_step(self, batch, batch_idx: int) -> None:
        pred = self(batch).float()
        mask = getattr(batch, "graph_mask", None)  # a padded batch's real materials (data.static_shapes)
        self.log("val/loss", masked_loss(self.spec.loss, pred, batch.y, mask), batch_size=real_graphs(batch),
                 prog_bar=True, sync_dist=True)
        for i, (key, metric) in enumerate(self.val_metrics.items()):
            metric.update(pred, batch.y, mask)
            self.log(f"val/{key}_median", metric, batch_size=real_graphs(batch), prog_bar=i == 0)

    def test_step(self, batch, batch_idx: int) -> None:
        # The final evaluation in fp32 whatever the training precision, as the authors evaluated
        # (bf16-mixed keeps fp32 master weights, so leaving autocast gives the fp32 network).
        with torch.autocast(self.device.type, enabled=False):
            pred = self(batch).float()
        rows: dict[str, list] = {"mat_id": list(batch.mat_id), "formula": list(batch.formula),
                                 "nsites": batch.nsites.tolist()}
        if self.spec.value_columns:
            rows["true"] = batch.y.reshape(-1).tolist()
            rows["pred"] = pred.reshape(-1).tolist()
        for score in self.spec.scores:
            metric = self.test_metrics[score.key]
            rows[score.column] = metric.per_sample(pred, batch.y).tolist()
            metric.update(pred, batch.y)
        ipa = getattr(batch, "ipa", None)
        if ipa is not None:
            # The IPA baseline: the IPA spectrum scored against the target (RPA is the reference).
            for key, metric in self.base_metrics.items():
                rows[f"ipa_{self.spec.score(key).column}"] = metric.per_sample(ipa, batch.y).tolist()
                metric.update(ipa, batch.y)
        self.test_rows.extend(dict(zip(rows, values)) for values in zip(*rows.values()))

    def on_test_epoch_start(self) -> None:
        self.test_rows = []

    def on_test_epoch_end(self) -> None:
        logs = {f"test/{key}_median": metric.compute() for key, metric in self.test_metrics.items()}
        logs.update({f"test/{key}_mean": self.test_metrics[key].samples().mean() for key in self.spec.means})
        logs.update({f"test/ipa_{key}_median": metric.compute() for key, metric in self.base_metrics.items()
                     if metric.values})
        self.log_dict({k: float(v) for k, v in logs.items()}, sync_dist=False)
        for metric in (*self.test_metrics.values(), *self.base_metrics.values()):
            metric.reset()
        # Per-material rows from every process, so rank 0 can write the whole table.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, self.test_rows)
            self.test_rows = [r for part in gathered for r in part]

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"mat_id": [...], "pred": Tensor [B, out_dim]}``."""
        return {"mat_id": list(batch.mat_id), "pred": self(batch).float().cpu()}

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer or DEFAULT_OPTIMIZER)
        trainer = getattr(self, "_trainer", None)
        # Lightning's fp16 grad scaler refuses gradient clipping with a fused optimiser: fp16 keeps the default.
        fp16 = trainer is not None and str(trainer.precision).startswith("16")
        if opt_cfg.get("_target_") in FUSED_OPTIMIZERS and self.device.type in FUSED_DEVICES and not fp16 \
                and not {"fused", "foreach", "differentiable"} & set(opt_cfg):
            # On a CPU torch's default is the per-parameter loop, with an item() per parameter and step:
            # the fused kernel takes ~4 ms instead of ~37 ms a step for the 4.9 M parameters of the IPA
            # network (benchmarks/cpu_2core.md, 2026-11-27), same update within float rounding. On a GPU
            # the default (foreach) launches a kernel group per parameter list; the H200's training steps
            # were launch-bound (1.7 ms of kernels in 23 ms, benchmarks/gpu/nvidia-h200.md), and the
            # fused kernel is one launch for the whole update.
            opt_cfg["fused"] = True
        optimizer = hydra.utils.instantiate(opt_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        sched_cfg = dict(self.hparams.scheduler)
        lightning_keys = {k: sched_cfg.pop(k) for k in ("monitor", "interval", "frequency") if k in sched_cfg}
        scheduler = hydra.utils.instantiate(sched_cfg, optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **lightning_keys}}
