"""Host synchronisations per training and validation step, per strategy and backbone (issue #36).

    python benchmarks/host_syncs.py [--out benchmarks/host_syncs.md]

Each configuration trains 2 epochs on the tiny synthetic data with
:class:`~optimate_pl.training.syncs.HostSyncCounter` and reports the host reads per step and the lines that
make them. Runs on a CPU: it counts the calls that would wait for the device on a GPU.
"""
from __future__ import annotations

import argparse
from pathlib import Path

CONFIGS = {
    "OPTIMATE DL": ["strategy=dl"],
    "OPTIMATE TL": ["strategy=tl", "strategy.pretrain_epochs=1"],
    "OPTIMATE MF": ["strategy=mf"],
    "DimeNet++ DL": ["strategy=dl", "model=dimenet", "model.net.blocks=1"],
    "ViSNet DL": ["strategy=dl", "model=visnet", "model.net.layers=1"],
}


def count(overrides: list[str], out: Path, accelerator: str = "cpu") -> "object":
    """The :class:`HostSyncCounter` of a 2-epoch run with ``overrides`` on ``accelerator``."""
    from hydra import compose, initialize_config_module

    from optimate_pl.training.stages import run
    from optimate_pl.training.syncs import HostSyncCounter

    base = ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1", f"trainer.accelerator={accelerator}",
            "trainer.precision=32-true", "data.source=synthetic", "data.synthetic_sizes.ipa=[200,40,40]",
            "data.synthetic_sizes.rpa=[100,20,20]", "data.batch_size=16", "data.subset=60", "test=false",
            "evaluate_train=false", "callbacks.progress_bar=null", f"paths.output_dir={out}/run",
            f"paths.root_dir={out}", "+callbacks.host_syncs._target_=optimate_pl.training.syncs.HostSyncCounter"]
    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*base, *overrides])
    run(cfg)
    return HostSyncCounter.last


def where(counter, top: int = 3) -> str:
    """The ``top`` places that sync most, as ``module.py:line xN`` (``-`` for none)."""
    return "; ".join(f"{k.split('/optimate_pl/')[-1]} x{v}" for k, v in counter.where.most_common(top)) or "-"


def main(argv: list[str] | None = None) -> str:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    lines = ["| configuration | host syncs per training step | per validation step | where |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as work:
        for i, (name, overrides) in enumerate(CONFIGS.items()):
            c = count(overrides, Path(work) / str(i))
            per = c.per_step()
            lines.append(f"| {name} | {per['train']:.1f} | {per['val']:.1f} | {where(c)} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        from optimate_pl.utils.atomic import atomic_write_text

        atomic_write_text(table + "\n", Path(args.out))
    return table


if __name__ == "__main__":
    main()
