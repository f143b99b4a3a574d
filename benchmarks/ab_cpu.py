"""A/B of the CPU training options of issue #23 in one process (alternating rounds, same data and threads).

    python benchmarks/ab_cpu.py --model ipa|dl_300 [--threads 1] [--rounds 2] [--epochs 2] [--cache DIR]

Variants: ``reference`` (bench.py's reference loop: list of Data, PyG DataLoader, plain Adam), ``ours-loop-adam``
(our DataModule and SpectraModule with ``fused=False``: the state before 2026-11-27), ``ours`` (fused Adam, the
default now), ``ours+edges`` (plus ``Optimate.compile_edges``), ``ours+compile1t`` (the whole network
``torch.compile``d with Inductor's loops on one thread) and ``ours+edges+compile1t`` (the same, traced
through ``gatv2_edges``); a ``+bf16`` suffix trains that variant with ``precision=bf16-mixed``. Graphs per second of the timed epochs after a
warm-up epoch (which absorbs the compilation). One process: the allocator setting applies to every variant, and
``bench.py`` (fresh processes) stays the reference for the published table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))
from bench import EpochTimer, ReferenceModule, _quiet_lightning, _trainer  # noqa: E402

from optimate_pl.config import model_net  # noqa: E402
from optimate_pl.utils.allocator import keep_freed_memory  # noqa: E402
from optimate_pl.data.datamodule import IPADataModule  # noqa: E402
from optimate_pl.models import SpectraModule  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


def run(kind: str, dm, net: dict, bs: int, drop: bool, epochs: int) -> float:
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    timer = EpochTimer()
    bf16, kind = kind.endswith("+bf16"), kind.removesuffix("+bf16")
    trainer = _trainer("cpu", epochs, timer, "bf16-mixed" if bf16 else "32-true")
    if kind == "reference":
        data = [dm.train_set[i] for i in range(len(dm.train_set))]
        trainer.fit(ReferenceModule(net), train_dataloaders=DataLoader(data, batch_size=bs, shuffle=True, drop_last=drop))
    else:
        opt = {"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 0.0}
        if kind == "ours-loop-adam":
            opt["fused"] = False
        module = SpectraModule(net=net, optimizer=opt)
        if kind == "ours+edges":
            module.model.compile_edges()
        if kind in ("ours+compile1t", "ours+edges+compile1t"):  # the whole network compiled, loops on one thread
            if kind == "ours+edges+compile1t":  # traced through gatv2_edges instead of PyG's propagate
                from optimate_pl.models.optimate import gatv2_edges

                module.model.compile_edges(gatv2_edges)
            module.model.compile(dynamic=True, options={"cpp.threads": 1})
        dm.batch_size, dm.drop_last, dm.device_resident = bs, drop, False
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
    n = len(dm.train_set) - (len(dm.train_set) % bs if drop else 0)
    return n * epochs / sum(timer.times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ipa")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--graphs", type=int, default=1024)
    p.add_argument("--cache", default=None)
    p.add_argument("--kinds", default="reference,ours-loop-adam,ours,ours+edges")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _quiet_lightning()
    keep_freed_memory(int(OmegaConf.load(CONF / "train.yaml").keep_freed_memory_mb) * 2**20)
    net = model_net(args.model)
    bs, drop = (20, True) if args.model == "dl_300" else (128, False)
    dm = IPADataModule(source="synthetic", cache_dir=args.cache, subset=args.graphs)
    dm.setup()
    kinds = args.kinds.split(",")
    speed: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in (kinds if r % 2 == 0 else kinds[::-1]):
            speed[k].append(run(k, dm, net, bs, drop, args.epochs))
            print(f"round {r} {k}: {speed[k][-1]:.0f} graphs/s", flush=True)
    base = sum(speed["reference"]) / len(speed["reference"]) if "reference" in speed else None
    print(f"{args.model}, batch {bs}, {torch.get_num_threads()} thread(s):")
    for k, v in speed.items():
        mean = sum(v) / len(v)
        print(f"  {k:16s} {mean:6.0f} graphs/s" + (f"  {mean / base:.2f}x reference" if base else ""))


if __name__ == "__main__":
    main()
