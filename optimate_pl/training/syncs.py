"""Counting host synchronisations of training and validation steps, on any device (a CPU included).

On a GPU every read of a device value by the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, a
data-dependent shape such as ``nonzero``) waits for the queued kernels: the H200 profile of a TL step showed
78 of them (benchmarks/gpu/nvidia-h200.md). :class:`HostSyncCounter` wraps the Python entry points of those
calls while a step runs (from ``on_*_batch_start`` to ``on_*_batch_end``: forward, loss, logging, backward and
the optimizer step; the batch is gathered before that window), so a CPU run counts what a GPU run would wait
for. PyTorch has ``torch.cuda.set_sync_debug_mode`` for this, but on CUDA only; hence by hand.
"""
from __future__ import annotations

import collections
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl
import torch

#: Tensor methods that read a value on the host (a device sync on a GPU).
SYNC_METHODS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__int__", "__float__", "__index__")


@contextmanager
def count_host_syncs(counts: collections.Counter, where: collections.Counter | None = None) -> Iterator[None]:
    """Within the block, count every call of :data:`SYNC_METHODS` (and ``.to('cpu')``, boolean-mask indexing) into
    ``counts``; ``where`` (optional) counts the calling ``file:line`` outside torch, to say what to fix."""
    from torch.overrides import TorchFunctionMode

    originals = {name: getattr(torch.Tensor, name) for name in (*SYNC_METHODS, "to")}
    own = {name for name in originals if name in torch.Tensor.__dict__}

    def record(name: str) -> None:
        counts[name] += 1
        if where is not None:
            for frame in reversed(traceback.extract_stack(limit=12)[:-2]):
                if "/torch/" not in frame.filename:
                    where[f"{frame.filename}:{frame.lineno} ({name})"] += 1
                    break

    unwrapped = {}  # our wrappers -> torch's methods: the mode below is handed the wrapper again

    def wrap(name):
        original = originals[name]

        def counted(self, *args, **kwargs):
            record(name)
            return original(self, *args, **kwargs)
        unwrapped[counted] = original
        return counted

    def to(self, *args, **kwargs):
        # Only an explicit "cpu" string: generic code (Lightning, torchmetrics) moves data to the module's device
        # as a torch.device, which on a CPU run is the CPU but on a GPU run is the GPU (no sync).
        target = kwargs.get("device", args[0] if args else None)
        if isinstance(target, str) and target.startswith("cpu"):
            record("to(cpu)")
        return originals["to"](self, *args, **kwargs)

    class MaskIndex(TorchFunctionMode):
        """A boolean mask gives a data-dependent shape: the host must learn the count (a sync on a GPU). Seen
        through a torch function mode: assigning ``Tensor.__getitem__`` on the class, even once, gives every
        tensor a sequence slot for the rest of the process (then ``torch.tensor([0-d tensors])`` fails)."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.__getitem__ and len(args) > 1:
                parts = args[1] if isinstance(args[1], tuple) else (args[1],)
                if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                    record("mask index")
            return unwrapped.get(func, func)(*args, **(kwargs or {}))

    try:
        for name in SYNC_METHODS:
            setattr(torch.Tensor, name, wrap(name))
        torch.Tensor.to = to
        unwrapped[to] = originals["to"]
        with MaskIndex():
            yield
    finally:
        # Put the class back as it was: a method torch.Tensor inherits (all of these, from the C base) is deleted
        # again, not set over the inherited one.
        for name, original in originals.items():
            if name in own:
                setattr(torch.Tensor, name, original)
            else:
                delattr(torch.Tensor, name)


class HostSyncCounter(pl.Callback):
    """Counts the host synchronisations inside every training and validation step (see the module docstring).

    ``train_steps``/``val_steps`` count the steps seen; ``train``/``val`` the calls by method; ``where`` the
    calling lines. Epoch-end work (metric computation, logging, checkpoints) is outside the windows: it is
    once per epoch, what the budget allows.
    """

    #: The counter made last in this process (a run configured with ``+callbacks.host_syncs._target_=...`` builds
    #: its own; the test and the benchmark read it here).
    last: "HostSyncCounter | None" = None

    def __init__(self) -> None:
        HostSyncCounter.last = self
        self.train, self.val, self.where = collections.Counter(), collections.Counter(), collections.Counter()
        self.train_steps = self.val_steps = 0
        self._active = None

    def _start(self, counts: collections.Counter) -> None:
        self._active = count_host_syncs(counts, self.where)
        self._active.__enter__()

    def _stop(self) -> None:
        if self._active is not None:
            self._active.__exit__(None, None, None)
            self._active = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_steps += 1
        self._start(self.train)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self.val_steps += 1
            self._start(self.val)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop()

    def per_step(self) -> dict[str, float]:
        """Host syncs per training step and per validation step."""
        return {"train": sum(self.train.values()) / max(self.train_steps, 1),
                "val": sum(self.val.values()) / max(self.val_steps, 1)}
