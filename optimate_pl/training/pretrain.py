"""TL's IPA pretraining stage: the IPA run derived from a TL run's own config, and its checkpoint.

``ensure_ipa_checkpoint(cfg)`` is what ``strategy=tl strategy.checkpoint=auto`` (and ``strategy=mf_ipa``) needs: the IPA
checkpoint named by everything that shapes that model, pretrained once (under a lock) when missing,
and again when the file was damaged since (its checksum sidecar says so; logged).
The IPA run itself is derived from the TL run's config (:func:`~optimate_pl.config.derive_config`).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..utils.atomic import atomic_open, checksum_path, file_lock, record_checksum, remove_with_checksum, verify_file
from ..config import REMOVE, debug_mode, derive_config, load_group_config
from ..data.cache import fingerprint
from ..models.card import read_card, write_card

log = logging.getLogger("optimate_pl")

#: Data keys that do not change what a model learns (where files live, how they are loaded).
DATA_KEYS_WITHOUT_EFFECT = ("cache_dir", "num_workers", "eval_batch_size")


def ipa_pretraining_config(cfg: DictConfig) -> DictConfig:
    """The ``strategy=ipa`` run a TL run starts from, derived from the TL run's own config nodes (resolved).

    Same data settings (source, split, cutoff, seeds, synthetic sizes; the IPA database at
    ``data.ipa_root``), the TL network (the TL model is the IPA model), the same accelerator,
    devices and precision; the IPA strategy's optimiser, batch size and epochs
    (``strategy.pretrain_epochs`` overrides the epochs); no test.
    """
    # The IPA database: data.ipa_root; one's own files keep data.root too (its ipa/ folder, and the RPA side the
    # data.split=auto of the IPA module places materials with, as the RPA module does), and so does another packed
    # GPAW ladder (it holds both rungs; without it the pretraining would learn the built-in ladder's IPA rung).
    ipa_root = cfg.data.root if cfg.data.source in ("files", "gpaw") else cfg.data.get("ipa_root")
    overrides = {"data._target_": load_group_config("data", "ipa")._target_, "data.root": ipa_root,
                 "data.subset": None, "data.max_sites": None, "data.target": "eps_imag", "data.train_on": "train",
                 "data.train_ids": None, "test": False, "compile": cfg.get("compile", False)}
    # An MF run (strategy=mf_ipa) starts from the very IPA model TL starts from: its own data and model keys go.
    if "rpa_repeat" in cfg.data:
        overrides["data.rpa_repeat"] = REMOVE
    if "multi_fidelity" in cfg.model:
        overrides["model.multi_fidelity"] = REMOVE
    seed = cfg.strategy.get("pretrain_seed")
    if seed is not None:  # e.g. a study's seeds of the RPA stage, all from one IPA model
        overrides["seed"] = int(seed)
    epochs = cfg.strategy.get("pretrain_epochs")
    if epochs:  # a short pretraining still validates, so that it has a best checkpoint
        every = load_group_config("strategy", "ipa").strategy.check_val_every_n_epoch[cfg.data.source]
        overrides.update({"trainer.max_epochs": int(epochs),
                          "trainer.check_val_every_n_epoch": min(int(epochs), int(every))})
    # A debugging run (debug=fast, overfit, limit_*_batches) pretrains in the same mode: one batch, not 500
    # epochs. Its checkpoint's name includes that setting, so it never stands in for a real pretraining.
    overrides.update({f"trainer.{key}": value for key, value in debug_mode(cfg.trainer)})
    # The precision is the TL run's resolved one: the checkpoint's name then says which precision trained it.
    return derive_config(cfg, overrides, strategy="ipa", keep_budget=False)


def ipa_checkpoint_path(cfg: DictConfig, ipa_cfg: DictConfig | None = None) -> Path:
    """Where the automatic IPA checkpoint of this TL run lives: named by everything that shapes that model."""
    ipa_cfg = ipa_cfg if ipa_cfg is not None else ipa_pretraining_config(cfg)
    data = _resolved(ipa_cfg.data, skip=DATA_KEYS_WITHOUT_EFFECT)
    trainer = _resolved(ipa_cfg.trainer, skip=("default_root_dir",))
    monitor = OmegaConf.select(ipa_cfg, "callbacks.model_checkpoint", default=None)
    shapes = {"data": data, "net": OmegaConf.to_container(ipa_cfg.model.net, resolve=True),
              "optimizer": OmegaConf.to_container(ipa_cfg.optimizer, resolve=True),
              "scheduler": OmegaConf.to_container(ipa_cfg.scheduler, resolve=True) if ipa_cfg.scheduler else None,
              "trainer": trainer, "seed": ipa_cfg.seed,
              "monitor": [monitor.get("monitor"), monitor.get("mode")] if monitor else None}
    if cfg.data.source == "gpaw":  # the built-in ladder grows between versions: a new one needs a new model
        from ..data import ladder

        shapes["dataset"] = ladder.digest(cfg.data.get("root"))
        # Another pack is named by its content, not by how its path was spelt (relative, absolute, trailing /).
        data["root"] = None
    contents = data_contents(ipa_cfg.data)
    if contents:
        shapes["contents"] = contents
    key = fingerprint(shapes)
    return Path(cfg.paths.checkpoint_dir) / f"ipa-{cfg.data.source}-{key[:16]}.ckpt"


def data_contents(data: DictConfig) -> dict[str, Any]:
    """What the folders an IPA pretraining reads hold, beyond their paths: one's own database (``data.source=files``:
    its files' names and sizes), each ``data.extra`` (the built-in ladder by its digest) and a split folder (its ids).
    A folder that grows can move materials between splits (``data.split=auto`` places new formula groups among the
    old), so a grown folder needs a new IPA model, not the one pretrained on its former split, which may have seen
    today's validation and test materials. Not file times: a copy or a checkout is the same data. (The authors'
    databases, ``figshare``, do not grow: their models keep their names.)"""
    from ..data import ladder
    from ..data.cache import source_stats
    from ..data.splits import read_split_files

    def files(path: Path) -> list:
        return [stat[:2] for stat in source_stats(path)]  # name and size

    out: dict[str, Any] = {}
    root = data.get("root")
    if data.source == "files" and root and Path(str(root)).expanduser().exists():
        out["root"] = files(Path(str(root)).expanduser())
    for extra in data.get("extra") or []:
        extra = str(extra)
        out[f"extra {extra}"] = ladder.digest() if extra == "gpaw" else files(Path(extra).expanduser())
    split = data.get("split")
    if split and str(split) not in ("published", "formula", "auto") and Path(str(split)).expanduser().is_dir():
        out["split"] = sorted(read_split_files(Path(str(split)).expanduser()).items())
    return out


def _resolved(node: DictConfig, skip: tuple[str, ...]) -> dict[str, Any]:
    """A node's values, resolved one by one, leaving out ``skip`` (they may point at Hydra's run dir)."""
    out = {}
    for key in node:
        if key not in skip:
            value = node[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return out


def ensure_ipa_checkpoint(cfg: DictConfig) -> Path:
    """The IPA checkpoint of ``strategy.checkpoint=auto``: reused when present, else pretrained now.

    Two runs that need the same checkpoint pretrain it once: the second waits on a lock. The file is
    verified against its checksum sidecar before reuse; a damaged one is pretrained again (logged).
    """
    from .callbacks import AUTOMATIC_PRETRAINING
    from .train import train

    ipa_cfg = ipa_pretraining_config(cfg)
    target = ipa_checkpoint_path(cfg, ipa_cfg)
    with file_lock(target.with_suffix(".lock")):
        problem = checkpoint_problem(target)
        if problem is None:
            log.info("strategy=%s: starting from the IPA checkpoint %s", cfg.strategy.name, target)
            return target
        if problem != "missing":
            log.warning("the automatic IPA checkpoint %s cannot be trusted (%s): pretraining it again", target,
                        problem)
            remove_with_checksum(target)
        run_dir = target.parent / f"{target.stem}-run"
        interrupted = run_dir / "checkpoints" / "last.ckpt"
        ipa_cfg = derive_config(ipa_cfg, {"paths.output_dir": str(run_dir)})
        if interrupted.is_file() and _resumable(interrupted):
            # A pretraining stopped by Ctrl-C or SIGTERM (SaveOnInterrupt) goes on where it stopped. The folder is
            # named by everything that shapes the model, so its last.ckpt is this very pretraining's.
            ipa_cfg = derive_config(ipa_cfg, {"ckpt_path": str(interrupted)})
            log.info("checkpoint=auto: resuming the interrupted IPA pretraining from %s", interrupted)
        else:
            log.info("checkpoint=auto: no IPA checkpoint at %s yet -> pretraining on IPA first "
                     "(%s, output in %s)", target, "debug: one batch" if ipa_cfg.trainer.get("fast_dev_run") else
                     f"{OmegaConf.select(ipa_cfg, 'trainer.max_epochs')} epochs", ipa_cfg.paths.output_dir)
        token = AUTOMATIC_PRETRAINING.set(True)
        try:
            result = train(ipa_cfg)
        finally:
            AUTOMATIC_PRETRAINING.reset(token)
        best = result.get("best_checkpoint")
        if not best:
            raise RuntimeError("IPA pretraining produced no checkpoint")
        with open(best, "rb") as src, atomic_open(target, "wb", checksum=True,
                                                  size_hint=Path(best).stat().st_size) as dst:
            shutil.copyfileobj(src, dst)  # a crash never leaves a half-copied checkpoint at target
        card = read_card(best)
        if card is not None:
            write_card(target, card)
    log.info("IPA checkpoint ready: %s", target)
    return target


def _resumable(path: Path) -> bool:
    """Whether an interrupted pretraining's ``last.ckpt`` loads (a damaged one is set aside: pretrain anew)."""
    from ..models.weights import CheckpointError, safe_load

    try:
        ok = isinstance(safe_load(path), dict)
    except (CheckpointError, OSError, RuntimeError, EOFError) as err:
        log.warning("the interrupted IPA pretraining's %s does not load (%s): pretraining anew", path, err)
        ok = False
    if not ok:
        path.replace(path.with_name(path.name + ".damaged"))
    return ok


def checkpoint_problem(path: Path) -> str | None:
    """Why the automatic checkpoint at ``path`` cannot be reused, or ``None``.

    Its checksum sidecar decides; a checkpoint of an earlier version (no sidecar) is adopted when it
    loads completely and holds finite weights, and gets its sidecar then.
    """
    from ..models.weights import CheckpointError, read_weights

    problem = verify_file(path)
    if problem is None or problem == "missing" or checksum_path(path).exists():
        return problem
    try:
        read_weights(path)
    except CheckpointError as err:
        return str(err)
    record_checksum(path)
    log.info("recorded the checksum of %s (written by an earlier version; it loads completely)", path)
    return None
