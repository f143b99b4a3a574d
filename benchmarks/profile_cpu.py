"""Where a CPU training step of OPTIMATE goes (issue #23): a torch.profiler epoch and a component breakdown.

    python benchmarks/profile_cpu.py [--model ipa|dl_300] [--batch 128] [--graphs 1024] [--cache DIR] [--part all]

Parts (each short; SYNTHETIC data as ``bench.py`` builds it, our DataModule and SpectraModule):

* ``matmul``: this CPU's fp32 matmul rate (1024x1024 @ 1024x2048, the output MLP's shape class), the ceiling;
* ``components``: one fixed batch, forward+backward of each part of the network timed alone (node MLP,
  GATv2 layers, attention pooling, output MLP, L1 loss), the Adam step, the batch gathering, and a plain
  training step (zero_grad, forward, loss, backward, step) in a bare loop; with the FLOPs of a step;
* ``lightning``: a warm-up epoch, then one epoch under ``torch.profiler`` (Lightning's ``Trainer.fit``,
  as ``bench.py``'s "ours (DataLoader)"): epoch time per step against the bare loop, the top operators,
  and the ``aten::item`` calls per step.

Numbers are indicative on a shared machine: read the shares, and compare A/B runs made in one process.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from optimate_pl.config import model_net
from optimate_pl.utils.allocator import keep_freed_memory
from optimate_pl.data.datamodule import IPADataModule
from optimate_pl.models import SpectraModule

#: This checkout's config folder (not ``optimate_pl.conf``: an editable install may map that to another checkout).
CONF = Path(__file__).resolve().parents[1] / "conf"


def conf(*parts: str):
    return OmegaConf.load(CONF.joinpath(*parts))


def best(fn, repeats: int = 7, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(threads: int) -> float:
    """GFLOP/s of a 1024x1024 @ 1024x2048 fp32 matmul with ``threads`` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 2048)
    out = torch.empty(1024, 2048)
    t = best(lambda: torch.mm(a, b, out=out), repeats=11)
    torch.set_num_threads(old)
    return 2 * 1024 * 1024 * 2048 / t / 1e9


def linear_flops(model, batch) -> dict[str, float]:
    """Forward multiply-adds x 2 of the linear layers, per part (FLOPs of one forward)."""
    n, e, b = batch.x.size(0), batch.edge_index.size(1), int(batch.num_graphs)
    f: dict[str, float] = Counter()
    for lin in model.mlp_init_node.lins:
        f["node MLP"] += 2 * n * lin.in_channels * lin.out_channels
    for i, gat in enumerate(model.gats(), 1):
        f[f"gat{i} node lins"] += 2 * 2 * n * gat.lin_l.in_channels * gat.lin_l.out_channels
        f[f"gat{i} lin_edge"] += 2 * e * gat.lin_edge.in_channels * gat.lin_edge.out_channels
    for lin in model.mlp_att.lins:
        f["pooling (mlp_att)"] += 2 * n * lin.in_channels * lin.out_channels
    for lin in model.mlp1.lins:
        f["output MLP"] += 2 * b * lin.in_channels * lin.out_channels
    return dict(f)


def components(module: SpectraModule, batch, dm, batch_size: int, repeats: int) -> dict[str, float]:
    """Seconds of each part's forward+backward on ``batch`` (median), of Adam's step and of the batch gathering."""
    from torch_geometric.utils import scatter, softmax

    model = module.model
    model.train()
    opt = module.configure_optimizers()
    if isinstance(opt, dict):
        opt = opt["optimizer"]
    edge_attr, ei, bvec, b = batch.edge_attr, batch.edge_index, batch.batch, int(batch.num_graphs)

    def fb(fn, *inputs):
        ins = [t.detach().requires_grad_() for t in inputs]
        out = fn(*ins)
        out.backward(torch.ones_like(out))

    def gats(h):
        for gat in model.gats():
            h = gat(h, ei, edge_attr=edge_attr)
        return h

    def pool(h):
        w = softmax(model.mlp_att(h), bvec, num_nodes=h.size(0), dim=0)
        return scatter(w * h, bvec, dim=0, dim_size=b, reduce="sum")

    with torch.no_grad():
        h0 = model.mlp_init_node(batch.x)
        h1 = gats(h0)
        lat = pool(h1)
        pred = F.leaky_relu(model.mlp1(lat))
    t: dict[str, float] = {}
    t["node MLP f+b"] = best(lambda: fb(model.mlp_init_node, batch.x), repeats)
    t["GATv2 layers f+b"] = best(lambda: fb(gats, h0), repeats)
    for i, gat in enumerate(model.gats(), 1):
        h_in = h0 if i == 1 else gats_upto(model, h0, ei, edge_attr, i - 1)
        t[f"  gat{i} f+b"] = best(lambda g=gat, h=h_in: fb(lambda x: g(x, ei, edge_attr=edge_attr), h), repeats)
    t["pooling f+b"] = best(lambda: fb(pool, h1), repeats)
    t["output MLP f+b"] = best(lambda: fb(lambda z: F.leaky_relu(model.mlp1(z)), lat), repeats)
    t["L1 loss f+b"] = best(lambda: fb(lambda p: F.l1_loss(p, batch.y).reshape(1), pred), repeats)

    module.zero_grad()
    F.l1_loss(model(batch), batch.y).backward()
    t["Adam step"] = best(opt.step, repeats)
    t["zero_grad"] = best(lambda: opt.zero_grad(set_to_none=True), repeats)
    ds = dm.train_set
    ks = torch.randperm(len(ds))[:batch_size]
    t["batch gathering (collate)"] = best(lambda: ds.collate(ks), repeats)

    def step():
        opt.zero_grad(set_to_none=True)
        F.l1_loss(model(batch), batch.y).backward()
        opt.step()

    t["plain step (zero_grad+fwd+loss+bwd+Adam)"] = best(step, repeats)
    t["plain forward only"] = best(lambda: model(batch), repeats)
    return t


def gats_upto(model, h, ei, edge_attr, k):
    with torch.no_grad():
        for gat in model.gats()[:k]:
            h = gat(h, ei, edge_attr=edge_attr)
    return h


def lightning_profile(dm, net: dict, epochs_warm: int = 1) -> tuple[float, int, object, Counter]:
    """(seconds per step of a profiled epoch, steps, key_averages, aten::item calls by caller)."""
    import lightning.pytorch as pl
    from torch.profiler import ProfilerActivity, profile

    import logging
    import warnings
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    class Prof(pl.Callback):
        def __init__(self):
            self.prof, self.t = None, 0.0

        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == epochs_warm:
                self.prof = profile(activities=[ProfilerActivity.CPU], record_shapes=False, with_stack=True)
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == epochs_warm:
                self.t = time.perf_counter() - self.t0
                self.prof.__exit__(None, None, None)

    cb = Prof()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs_warm + 1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0, callbacks=[cb], precision="32-true")
    torch.manual_seed(0)
    module = SpectraModule(net=net)
    loader = dm.train_dataloader()
    trainer.fit(module, train_dataloaders=loader)
    steps = len(loader)
    callers: Counter = Counter()
    for ev in cb.prof.events():
        if ev.name == "aten::item":
            stack = [s for s in (ev.stack or []) if "torch/" not in s or "optim" in s]
            callers[stack[0] if stack else "?"] += 1
    return cb.t / steps, steps, cb.prof.key_averages(), callers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ipa")
    p.add_argument("--batch", type=int, default=None, help="default: 128 (ipa) or 20 (dl_300, drop_last)")
    p.add_argument("--graphs", type=int, default=1024)
    p.add_argument("--cache", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--part", default="all", choices=["all", "matmul", "components", "lightning"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's). With another process busy on one of 2 cores, "
                        "2 threads make every small op wait for the descheduled thread: profile with 1 there")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bs = args.batch or (20 if args.model == "dl_300" else 128)
    keep_freed_memory(int(conf("train.yaml").keep_freed_memory_mb) * 2**20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.part in ("all", "matmul"):
        for th in sorted({1, 2, torch.get_num_threads()}):
            print(f"fp32 matmul 1024x1024 @ 1024x2048, {th} thread(s): {matmul_rate(th):.0f} GFLOP/s")
        if args.part == "matmul":
            return
    dm = IPADataModule(source="synthetic", cache_dir=args.cache, subset=args.graphs)
    dm.setup()
    dm.batch_size, dm.drop_last, dm.device_resident = bs, args.model == "dl_300", False
    net = model_net(args.model)
    torch.manual_seed(0)
    module = SpectraModule(net=net)
    batch = dm.train_set.collate(torch.randperm(len(dm.train_set))[:bs])
    print(f"model {args.model}, batch {bs}: {batch.x.size(0)} nodes, {batch.edge_index.size(1)} edges")
    if args.part in ("all", "components"):
        fl = linear_flops(module.model, batch)
        fwd = sum(fl.values())
        # training ~ 3x forward, except layers whose input needs no gradient (2x: lin_edge, first node linear)
        no_dgrad = sum(v for k, v in fl.items() if "lin_edge" in k) + 2 * batch.x.size(0) * 13 * net["node_widths"][0]
        train = 3 * fwd - no_dgrad
        print("forward GFLOP (linear layers): " + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in fl.items()))
        print(f"forward {fwd / 1e9:.2f} GFLOP, training step ~{train / 1e9:.2f} GFLOP")
        t = components(module, batch, dm, bs, args.repeats)
        step = t["plain step (zero_grad+fwd+loss+bwd+Adam)"]
        parts = sum(v for k, v in t.items() if not k.startswith(" ") and "plain" not in k and "collate" not in k)
        for k, v in t.items():
            print(f"{k:45s} {v * 1e3:8.2f} ms  {100 * v / step:5.1f} % of the plain step")
        print(f"{'sum of the parts (w/o collate)':45s} {parts * 1e3:8.2f} ms; plain step {step * 1e3:.2f} ms "
              f"=> {train / step / 1e9:.0f} GFLOP/s achieved")
    if args.part in ("all", "lightning"):
        per_step, steps, avg, callers = lightning_profile(dm, net)
        print(f"Lightning epoch (profiled): {steps} steps, {per_step * 1e3:.1f} ms/step "
              f"({bs / per_step:.0f} graphs/s under the profiler)")
        print(avg.table(sort_by="self_cpu_time_total", row_limit=25))
        items = sum(n for n in callers.values())
        print(f"aten::item: {items / steps:.1f} per step; by caller: ")
        for c, n in callers.most_common(8):
            print(f"  {n / steps:5.1f}  {c}")


if __name__ == "__main__":
    main()
