"""Benchmark: our training/evaluation paths against a reference-style loop, measured in one run.

    python -m optimate_pl.bench [--graphs 2048] [--epochs 2] [--device auto] [--out bench.md]

Reference style (as the authors' notebooks): a Python list of PyG ``Data`` objects with edge
features precomputed, PyG ``DataLoader``, a minimal LightningModule with the same network, and
evaluation one material at a time. Ours: the cached :class:`GraphStore` with our DataModule and
:class:`SpectraModule`, the device-resident batches, and batched evaluation. Same data, same
device, same number of timed epochs after one warm-up epoch. Numbers are on SYNTHETIC data.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from .data.datamodule import IPADataModule, synthetic_stores
from .data.store import GraphStore
from .models import Optimate, SpectraModule
from .train import load_group_config


class EpochTimer(pl.Callback):
    """Wall time of every training epoch (synchronised on GPU)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def _sync(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._sync(trainer)
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._sync(trainer)
        self.times.append(time.perf_counter() - self._t0)


class ReferenceModule(pl.LightningModule):
    """The minimal module of a notebook: forward, L1 loss, Adam."""

    def __init__(self, net: dict, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = Optimate(**net), lr

    def training_step(self, batch, batch_idx):
        return F.l1_loss(self.model(batch), batch.y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _trainer(accelerator: str, epochs: int, timer: EpochTimer, precision: str) -> pl.Trainer:
    return pl.Trainer(accelerator=accelerator, devices=1, max_epochs=epochs + 1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer], precision=precision)


def train_throughput(kind: str, dm: IPADataModule, net: dict, batch_size: int, epochs: int, accelerator: str,
                     precision: str, drop_last: bool) -> float:
    """Graphs per second over the timed epochs (the first epoch is a warm-up)."""
    from torch_geometric.loader import DataLoader

    torch.manual_seed(0)
    timer = EpochTimer()
    trainer = _trainer(accelerator, epochs, timer, precision)
    if kind == "reference":
        data_list = [dm.train_set[i] for i in range(len(dm.train_set))]  # a list of Data, as notebooks do
        loader = DataLoader(data_list, batch_size=batch_size, shuffle=True, drop_last=drop_last)
        trainer.fit(ReferenceModule(net), train_dataloaders=loader)
    else:
        dm.batch_size, dm.drop_last = batch_size, drop_last
        dm.device_resident = kind == "ours-resident"
        trainer.fit(SpectraModule(net=net), train_dataloaders=dm.train_dataloader())
    n = len(dm.train_set) - (len(dm.train_set) % batch_size if drop_last else 0)
    return n * epochs / sum(timer.times[1:])


@torch.no_grad()
def eval_throughput(dm: IPADataModule, net: dict, device: torch.device, batched: bool) -> float:
    """Test graphs per second: one material at a time (reference) or batches of 256 (ours)."""
    model = Optimate(**net).to(device).eval()
    ds = dm.test_set
    t0 = time.perf_counter()
    if batched:
        for i in range(0, len(ds), 256):
            model(ds.collate(range(i, min(len(ds), i + 256))).to(device))
    else:
        for i in range(len(ds)):
            model(ds.collate([i]).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(ds) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> str:
    """Run every measurement and print (and optionally write) a Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=int, default=2048, help="training graphs for the throughput runs")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    accelerator = "gpu" if args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        paths = synthetic_stores(cache)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = len(GraphStore.load(paths["ipa"])[0]) + len(GraphStore.load(paths["rpa"])[0])
        reload = time.perf_counter() - t0
        rows.append(("dataset: generate + featurise (9745 IPA + 5852 RPA)", f"{n / build:.0f} mat/s",
                     f"cached reload {n / reload:.0f} mat/s", f"{build / reload:.0f}x"))
        dm = IPADataModule(cache_dir=cache, subset=args.graphs, eval_batch_size=256)
        dm.setup()
        for label, model_name, bs, drop in (("IPA/TL architecture, batch 128", "ipa", 128, False),
                                            ("DL-300 architecture, batch 20", "dl_300", 20, True)):
            net = OmegaConf.to_container(load_group_config("model", model_name).net)
            ref = train_throughput("reference", dm, net, bs, args.epochs, accelerator, precision, drop)
            ours = train_throughput("ours", dm, net, bs, args.epochs, accelerator, precision, drop)
            resident = train_throughput("ours-resident", dm, net, bs, args.epochs, accelerator, precision, drop)
            rows.append((f"train {label}: reference loop", f"{ref:.0f} graphs/s", "", "1.00x"))
            rows.append((f"train {label}: ours (DataLoader)", f"{ours:.0f} graphs/s", "", f"{ours / ref:.2f}x"))
            rows.append((f"train {label}: ours (device-resident)", f"{resident:.0f} graphs/s", "",
                         f"{resident / ref:.2f}x"))
        net = OmegaConf.to_container(load_group_config("model", "ipa").net)
        one = eval_throughput(dm, net, device, batched=False)
        batched = eval_throughput(dm, net, device, batched=True)
        rows.append(("evaluate IPA architecture: one material at a time", f"{one:.0f} graphs/s", "", "1.00x"))
        rows.append(("evaluate IPA architecture: batched (256)", f"{batched:.0f} graphs/s", "", f"{batched / one:.2f}x"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mem = f"peak RSS {rss:.0f} MiB" + (f", peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                                       if device.type == "cuda" else "")
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"Benchmark on {dev_name}, SYNTHETIC data, {args.graphs} training graphs, {args.epochs} timed epochs "
             f"after 1 warm-up, precision {precision}; {mem}", "",
             "| measurement | throughput | | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
