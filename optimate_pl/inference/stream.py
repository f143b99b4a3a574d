"""Prediction at scale: structures streamed and featurised in worker processes, the forward in
``trainer.predict`` (one GPU, several with DDP, SLURM through Hydra's launcher), results written in
shards by a Lightning ``BasePredictionWriter``.

The input is cut into chunks of ``chunk_size`` materials in input order; chunk ``k`` belongs to rank
``k % world_size``. A rank featurises its chunks in a process pool while its model runs on the
previous batches, and writes each finished chunk as one shard: ``shards/materials-<k>.parquet``
(per-material scalars), ``spectra/part-<k>.parquet`` (the spectra, with the energy grid stored once
in ``energy.csv`` and in the files' metadata) and ``shards/errors-<k>.csv``, then a marker
``shards/done-<k>.json``. A killed run started again skips every chunk with a marker. Memory stays
bounded by two chunks in flight, whatever the input size.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import IterableDataset

from ..utils.atomic import atomic_open, atomic_write_text
from ..data.batching import batch_from_arrays
from ..utils.parallel import exit_with_parent, usable_cores
from ..data.inputs import Failed, Featurised, InputItem, featurise_items, iter_inputs

log = logging.getLogger("optimate_pl")


def _chunks(items: Iterator[InputItem], size: int) -> Iterator[list[InputItem]]:
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def done_chunks(output: Path) -> set[int]:
    """Chunks whose shards are complete (their marker exists)."""
    return {int(p.stem.split("-")[1]) for p in (output / "shards").glob("done-*.json")}


#: The fewest structures a featurisation task carries: below it a task's pickling costs more than it spreads.
MIN_PART = 8


class StructureStream(IterableDataset):
    """Batches of featurised inputs, chunk by chunk (see the module docstring).

    Each yielded item is a PyG batch with ``mat_id``, ``source``, ``formula`` lists, ``chunk`` (its
    chunk index) and, on a chunk's last batch, ``chunk_end=True`` with the chunk's ``failures`` and
    ``n_items``. A chunk with no valid material gives one batch of zero graphs.
    """

    def __init__(self, input: str | Path, output: str | Path, cutoff: float, min_distance: float | None,
                 batch_size: int = 256, chunk_size: int = 10_000, workers: int | None = None,
                 recursive: bool = False, forward_on_cpu: bool = False) -> None:
        self.input, self.output, self.recursive = input, Path(output), recursive
        self.cutoff, self.min_distance = cutoff, min_distance
        self.batch_size, self.chunk_size = batch_size, chunk_size
        self.workers, self.forward_on_cpu = workers, forward_on_cpu

    def default_workers(self, world: int) -> int:
        """Featurisation processes when ``workers`` is not set: the cores left over besides this process,
        at least 1; none where the model runs on the CPU with 2 cores or fewer per process, since there the
        forward already keeps every core busy and a worker only competes with it (and costs its start-up:
        on 2 cores, 3,538 Alexandria entries took less time and CPU in one process, benchmarks/cpu_2core.md)."""
        cores = max(1, usable_cores() // world)
        return 0 if self.forward_on_cpu and cores <= 2 else max(1, cores - 1)

    def part_size(self, n_items: int, workers: int) -> int:
        """Structures per featurisation task: a batch, or less where a chunk has fewer batches than four per
        worker, so that every worker has work (a chunk of 250 on 15 workers was one task, featurised by one
        process while 14 idled: the H200's screening ran at 1.1x the one-process reference,
        benchmarks/gpu/nvidia-h200.md). Batches are re-assembled to ``batch_size`` for the forward."""
        if workers <= 0:
            return self.batch_size
        return min(self.batch_size, max(MIN_PART, -(-n_items // (4 * workers))))

    def _submit(self, pool: ProcessPoolExecutor | None, items: list[InputItem]) -> Future | list:
        if pool is None:
            return featurise_items(items, self.cutoff, self.min_distance)
        return pool.submit(featurise_items, items, self.cutoff, self.min_distance)

    def __iter__(self) -> Iterator[Any]:
        rank, world = _rank_and_world()
        skip = done_chunks(self.output)
        workers = self.workers if self.workers is not None else self.default_workers(world)
        pool = None
        if workers > 0:
            import multiprocessing

            # spawn: the workers never inherit a CUDA context; they import only NumPy and pymatgen. They
            # end with this process, also when it is killed (kill -9) and cannot shut them down.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=exit_with_parent, initargs=(os.getpid(),))
        pending: deque[tuple[int, int, list]] = deque()
        try:
            for k, chunk in enumerate(_chunks(iter_inputs(self.input, self.recursive), self.chunk_size)):
                if k % world != rank or k in skip:
                    continue
                step = self.part_size(len(chunk), workers)
                parts = [self._submit(pool, chunk[i:i + step]) for i in range(0, len(chunk), step)]
                pending.append((k, len(chunk), parts))
                while len(pending) > 1:  # one chunk featurising ahead of the one being predicted
                    yield from self._emit(*pending.popleft())
            while pending:
                yield from self._emit(*pending.popleft())
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _emit(self, k: int, n_items: int, parts: list) -> Iterator[Any]:
        failures: list[Failed] = []
        ready: list[Featurised] = []
        bs = self.batch_size
        for i, part in enumerate(parts):
            for r in (part.result() if isinstance(part, Future) else part):
                (failures if isinstance(r, Failed) else ready).append(r)
            last = i == len(parts) - 1
            # Full batches as soon as they are there; what remains (maybe nothing) closes the chunk.
            while len(ready) > bs or (len(ready) == bs and not last):
                yield self._batch(ready[:bs], k, False, [], n_items)
                ready = ready[bs:]
        yield self._batch(ready, k, True, failures, n_items)

    @staticmethod
    def _batch(items: list[Featurised], k: int, end: bool, failures: list[Failed], n_items: int) -> Any:
        batch = batch_from_arrays([f.arrays for f in items])
        batch.mat_id = [f.id for f in items]
        batch.source = [f.source for f in items]
        batch.formula = [f.formula for f in items]
        batch.volume_per_site = [f.volume_per_site for f in items]
        batch.chunk, batch.chunk_end, batch.failures, batch.n_items = k, end, failures, n_items
        return batch


class PredictionModule(pl.LightningModule):
    """The forward of ``trainer.predict``: predictions, the derived scalars, and the spectra to keep.

    Args:
        predictor: a :class:`~optimate_pl.inference.predictor.Predictor`.
        store_spectra: which spectra of :data:`optimate_pl.inference.screening.SPECTRA` the writer keeps.
        compile_after: compile the networks' GATv2 edge work (``Optimate.compile_edges``) once this many
            materials are predicted (0: before the first); ``None``: never.
    """

    def __init__(self, predictor: torch.nn.Module, store_spectra: tuple[str, ...],
                 compile_after: int | None = None) -> None:
        super().__init__()
        self.predictor, self.store_spectra = predictor, store_spectra
        self.compile_after, self.seen = compile_after, 0

    def _compile_edges(self) -> bool:
        """Switch every network to the compiled edge work; ``False`` (and PyG's layers) where one cannot."""
        self.compile_after = None  # once
        try:
            for net in self.predictor.nets:
                if not hasattr(net, "compile_edges"):
                    raise ValueError(f"the backbone {type(net).__name__} has no GATv2 edge work to compile")
                net.compile_edges()
        except ValueError as err:  # an architecture the compiled edge function does not cover: stay on PyG
            self._uncompile(f"compile_edges: {err}; predicting without it")
            return False
        log.info("compile_edges: %d materials predicted, compiling the GATv2 edge work for the rest", self.seen)
        return True

    def _uncompile(self, why: str) -> None:
        for net in self.predictor.nets:
            if hasattr(net, "uncompile_edges"):
                net.uncompile_edges()
        log.warning(why)

    def _forward(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The prediction [B, out] and, for an ensemble, the members' spread of every scalar (``<scalar>_std``)
        and, calibrated, the spectrum's band."""
        from ..spectra import optics

        if not self.predictor.is_ensemble:
            return self.predictor(batch), {}
        preds = self.predictor.members(batch)
        spread = {} if self.predictor.is_sc_model else optics.scalar_spread(preds)
        if self.predictor.calibration is None:
            return preds.mean(0), spread
        u = self.predictor.uncertainty(batch, preds)
        return u["mean"], {"eps_imag_lower": u["lower"], "eps_imag_upper": u["upper"],
                           "expected_sc_error": u["expected_sc_error"], **spread}

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor] | None:
        from ..spectra import optics

        if batch.num_graphs == 0:
            return None
        compiled_now = self.compile_after is not None and self.seen >= self.compile_after and self._compile_edges()
        self.seen += batch.num_graphs
        try:
            pred, band = self._forward(batch)
        except Exception as err:  # noqa: BLE001 -- torch.compile builds at its first call: a missing compiler
            if not compiled_now:    # piece (headers, OpenMP, an unwritable cache) must not end a long screening
                raise
            self._uncompile(f"compile_edges: compiling the edge work failed ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}); predicting without it")
            pred, band = self._forward(batch)
        if self.predictor.is_sc_model:
            return {"sc_rpa_ipa": pred[:, 0].cpu()}
        # The derived spectra and scalars from the prediction without its below-gap noise (optics.denoised); the
        # prediction itself is kept as the network gave it.
        derived = optics.derive(optics.denoised(pred))
        out = {"eps_imag": pred, **band, **derived, **optics.scalars(pred, derived)}
        return {k: v.float().cpu() for k, v in out.items() if v.dim() == 1 or k in self.store_spectra}


@dataclass
class _ChunkBuffer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    spectra: dict[str, list[np.ndarray]] = field(default_factory=dict)


class ShardWriter(BasePredictionWriter):
    """Writes each finished chunk as its shards (Parquet tables, an errors CSV, then its marker).

    Args:
        output: the prediction folder.
        store_spectra: names of the spectra of each prediction kept in ``spectra/`` (e.g. ``eps_imag``);
            every 1-D value of a prediction becomes a column of the materials table.
        metadata: written into every Parquet file (model provenance, energy grid).
    """

    def __init__(self, output: str | Path, store_spectra: tuple[str, ...], metadata: dict[str, str]) -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self.store_spectra = store_spectra
        self.metadata = {k: str(v) for k, v in metadata.items()}
        self.buffers: dict[int, _ChunkBuffer] = {}
        self.t0 = time.perf_counter()
        self.n_done = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        buf = self.buffers.setdefault(batch.chunk, _ChunkBuffer())
        if prediction is not None:
            scalars = {k: v.numpy() for k, v in prediction.items() if v.dim() == 1}
            for i, mid in enumerate(batch.mat_id):
                row = {"id": mid, "source": batch.source[i], "formula": batch.formula[i], "nsites": int(batch.nsites[i]),
                       "volume_per_site": float(batch.volume_per_site[i])}
                row.update({k: float(v[i]) for k, v in scalars.items()})
                buf.rows.append(row)
            for name in self.store_spectra:
                buf.spectra.setdefault(name, []).append(prediction[name].numpy().astype(np.float32))
        if batch.chunk_end:
            self._flush(batch.chunk, buf, batch.failures, batch.n_items)
            del self.buffers[batch.chunk]

    def _flush(self, k: int, buf: _ChunkBuffer, failures: list[Failed], n_items: int) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        shards = self.output / "shards"
        table = pa.Table.from_pandas(pd.DataFrame(buf.rows, columns=None if buf.rows else ["id", "source", "formula",
                                                                                          "nsites"]),
                                     preserve_index=False).replace_schema_metadata(self.metadata)
        with atomic_open(shards / f"materials-{k:06d}.parquet", "wb", size_hint=table.nbytes) as fh:
            pq.write_table(table, fh)
        if self.store_spectra:
            columns = {"id": pa.array([r["id"] for r in buf.rows], pa.string()),
                       "source": pa.array([r["source"] for r in buf.rows], pa.string())}
            for name in self.store_spectra:
                parts = buf.spectra.get(name) or [np.zeros((0, 2001), np.float32)]
                values = np.concatenate(parts)
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
            spectra = pa.table(columns).replace_schema_metadata(self.metadata)
            with atomic_open(self.output / "spectra" / f"part-{k:06d}.parquet", "wb", size_hint=spectra.nbytes) as fh:
                pq.write_table(spectra, fh)
        errors = pd.DataFrame([f.__dict__ for f in failures], columns=["id", "source", "reason", "detail"])
        atomic_write_text(errors.to_csv(index=False), shards / f"errors-{k:06d}.csv")
        marker = {"chunk": k, "n_items": n_items, "n_predicted": len(buf.rows), "n_failed": len(failures),
                  "reasons": dict(Counter(f.reason for f in failures))}
        atomic_write_text(json.dumps(marker), shards / f"done-{k:06d}.json")  # last: the shard is complete
        self.n_done += n_items
        rate = self.n_done / max(time.perf_counter() - self.t0, 1e-9)
        log.info("chunk %d written: %d materials, %d predicted, %d skipped (%.0f materials/s so far)", k, n_items,
                 len(buf.rows), len(failures), rate)
