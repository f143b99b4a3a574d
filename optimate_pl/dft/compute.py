"""``optimate-pl-compute``: the IPA (and RPA) rungs of many structures with GPAW, resumable.

Into ``output/``:

* ``ipa/<id>.json``: the IPA-database entry of every computed material;
* ``rpa/<id>.json``: the RPA-database entry (``level=both``), with ``rpa_similarity``;
* ``errors.csv``: ``id, source, reason, message, seconds`` of every material that was not computed;
* ``summary.json``: counts per reason, materials per hour, core-seconds per material and rung.

With ``chunk=i/n`` the error table, summary and lock are the chunk's own (``errors-i-of-n.csv``, ...), so
that the n chunks (a SLURM job array) share one output folder; every run reads all error tables.

A material with its entry written, or with a recorded permanent failure, is never recomputed: a killed
run started again continues where it stopped (``retry_failed=true`` retries the failures). ``chunk=i/n``
takes every n-th material from the i-th (a SLURM array task's share); ``order=size`` computes the
smallest cells first. Each worker is one serial GPAW process on one core.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import logging
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from ..utils.atomic import DiskFullError, atomic_write_text, file_lock, require_free_space
from ..data.inputs import InputItem, iter_inputs, read_structure
from ..data.entries import damaged_entry, entry_file_name
from ..data.failures import BY_SETTINGS, TRANSIENT, read_folder, read_table, write_table
from .entries import ipa_entry, rpa_entry
from .runner import MaterialFailed, gpaw_python, run_material, stop_workers
from .settings import LadderSettings

log = logging.getLogger(__name__)
#: Free space checked before each material starts, so that a full disk stops the run before a calculation, not after
#: it (its result then lost): the entries (~40-70 kB each) and the worker's scratch (the ``nscf.gpw`` file with
#: wave functions, up to a few hundred MB for a 6-site cell at the default cutoff).
OUTPUT_SPACE = 16 << 20
#: The settings of the latest run into a folder (written when it starts), for the next run to compare with.
RUN_SETTINGS = "run_settings.json"
SCRATCH_SPACE = 512 << 20


@dataclass
class ComputeOptions:
    """What to compute and how (the ``optimate-pl-compute`` settings besides ``settings``)."""

    input: str
    output: str
    level: str = "both"
    workers: int = 1
    mpi_procs: int = 1
    time_limit_s: float | None = 3600.0
    nice: int = 10
    gpaw_python: str = "auto"
    max_sites: int | None = None
    min_gap_eV: float | None = 0.5
    order: str = "input"
    limit: int | None = None
    chunk: str | None = None
    retry_failed: bool = False
    ids: str | None = None
    recursive: bool = False
    scratch: str | None = None


def _entry_data(item: InputItem) -> dict:
    """The database fields of an input entry (``nsites``, ``band_gap_ind``, the metadata the entries keep): of a
    JSON entry, or of a ``.zip`` member read here (the authors' databases; a zip once skipped the gap pre-filter and
    the size order without a word); {} for a structure file."""
    entry = item.payload if item.kind == "entry" else _zip_member(*item.payload) if item.kind == "member" else None
    data = entry.get("data") if isinstance(entry, dict) else None
    return data if isinstance(data, dict) else {}


def _zip_member(path: str, member: str) -> Any:
    """The JSON of one member of a zip (None where unreadable: the worker's reading then says why)."""
    import zipfile

    try:
        return json.loads(_open_zip(path).read(member))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


@functools.lru_cache(maxsize=4)
def _open_zip(path: str):
    """One open ZipFile per archive (its directory is read once, not once per member)."""
    import zipfile

    return zipfile.ZipFile(path)


class Workdir:
    """The output folder: which materials are done, the entries, the error table, the summary."""

    def __init__(self, root: str | Path, level: str, chunk: str | None = None):
        self.root = Path(root)
        self.level = level
        self.suffix = "" if not chunk else "-" + str(chunk).replace("/", "-of-")  # this chunk's own files
        (self.root / "ipa").mkdir(parents=True, exist_ok=True)
        if level == "both":
            (self.root / "rpa").mkdir(exist_ok=True)
        self.errors: dict[str, dict] = read_table(self.errors_path)  # this run's table
        # Every table of the folder: other chunks', and the failures restored from a pack (errors-packed.csv).
        self.known: dict[str, dict] = read_folder(self.root)

    @property
    def errors_path(self) -> Path:
        return self.root / f"errors{self.suffix}.csv"

    def entry_path(self, mat_id: str, kind: str) -> Path:
        """The entry file of ``mat_id``: ``kind`` ipa or rpa."""
        return self.root / kind / entry_file_name(mat_id)

    def done(self, mat_id: str, retry_failed: bool) -> bool:
        """Whether ``mat_id`` has its entries (whole ones: a damaged file is set aside and computed again), or failed
        for a reason of its own (not to be retried). ``level=both`` needs both: a whole RPA entry beside a damaged
        IPA one would be counted done and fail every pack."""
        kinds = ("ipa", "rpa") if self.level == "both" else ("ipa",)
        whole = 0
        for kind in kinds:
            path = self.entry_path(mat_id, kind)
            if not path.exists():
                continue
            problem = damaged_entry(path)
            if problem is None:
                whole += 1
                continue
            aside = path.with_name(path.name + ".damaged")
            path.replace(aside)
            log.warning("%s is damaged (%s): moved to %s, computing %s again", path, problem, aside.name, mat_id)
        if whole == len(kinds):
            return True
        err = self.known.get(mat_id)
        return bool(err) and err["reason"] not in BY_SETTINGS and not (retry_failed and err["reason"] in TRANSIENT)

    def write_entries(self, mat_id: str, entries: dict[str, dict]) -> None:
        # IPA before RPA: a run killed in between leaves no RPA entry, so the material is computed again.
        for kind in ("ipa", "rpa"):
            if kind in entries:
                atomic_write_text(json.dumps(entries[kind]), self.entry_path(mat_id, kind))
        self.known.pop(mat_id, None)
        if self.errors.pop(mat_id, None) is not None:
            self._write_errors()

    def record_failure(self, item: InputItem, reason: str, message: str, seconds: float) -> None:
        self.errors[item.id] = self.known[item.id] = {"id": item.id, "source": item.source, "reason": reason, "message": message,
                                "seconds": f"{seconds:.1f}"}
        self._write_errors()

    def _write_errors(self) -> None:
        write_table(self.errors, self.errors_path)


def read_ids(path: str | Path) -> list[str]:
    """Material ids from a text file (one a line) or a CSV with a ``mat_id`` or ``id`` column (next_rpa's list),
    either of them gzipped (``.gz``)."""
    import gzip

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ids={path}: no such file")
    try:
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"ids={path}: not a readable text or .gz file ({type(err).__name__}: {err})") from None
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first:
        rows = list(csv.DictReader(io.StringIO(text)))
        column = next((c for c in ("mat_id", "id") if c in rows[0]), None) if rows else None
        if column is None:
            raise ValueError(f"ids={path}: a CSV needs a mat_id or id column (has {first})")
        return [r[column].strip() for r in rows if r[column].strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def select(items: Iterable[InputItem], opts: ComputeOptions, workdir: Workdir) -> tuple[list, list]:
    """The materials to compute now (in order), and the ones dropped before any DFT, with why."""
    todo, dropped = [], []
    wanted = read_ids(opts.ids) if opts.ids else None
    if wanted is not None:
        position = {m: i for i, m in reversed(list(enumerate(wanted)))}
        items = sorted((it for it in items if it.id in position), key=lambda it: position[it.id])
        missing = sorted(set(wanted) - {it.id for it in items}, key=position.get)
        if missing:
            log.warning("ids=%s: %d of its %d ids are not in input=%s (e.g. %s)", opts.ids, len(missing), len(set(wanted)),
                        opts.input, ", ".join(missing[:3]))
    for item in items:
        data = _entry_data(item)
        gap = data.get("band_gap_ind")
        if opts.min_gap_eV is not None and isinstance(gap, (int, float)) and gap < opts.min_gap_eV:
            dropped.append((item, "small_gap", f"band_gap_ind {gap} eV < {opts.min_gap_eV} eV in the input"))
            continue
        nsites = data.get("nsites")
        if not isinstance(nsites, int) and (opts.order == "size" or opts.max_sites is not None) \
                and item.kind == "file":
            nsites = _file_sites(item)  # a CIF/POSCAR says its size only when read (cheap next to its DFT)
        if opts.max_sites is not None and isinstance(nsites, int) and nsites > opts.max_sites:
            continue
        todo.append((item, nsites if isinstance(nsites, int) else 10**6))
    if opts.order not in ("input", "size"):
        raise ValueError(f"order must be 'input' or 'size', got {opts.order!r}")
    if opts.order == "size" and wanted is None:  # an ids list keeps its own order (a ranking)
        todo.sort(key=lambda t: t[1])  # stable: input order within one size
    todo = [t[0] for t in todo]
    if opts.chunk:
        i, n = (int(x) for x in str(opts.chunk).split("/"))
        if not 0 <= i < n:
            raise ValueError(f"chunk={opts.chunk}: need 0 <= i < n")
        todo = todo[i::n]
    todo = [it for it in todo if not workdir.done(it.id, opts.retry_failed)]
    return todo, dropped


def _file_sites(item: InputItem) -> int | None:
    """The number of sites of a structure file, or None when it cannot be read (its run then records why)."""
    try:
        return len(read_structure(item))
    except Exception:  # noqa: BLE001 - the material's own failure is recorded when it is computed
        return None


def check_space(opts: ComputeOptions) -> None:
    """Stop before a material when its output or scratch folder lacks the space for it (one line)."""
    import tempfile

    require_free_space(opts.output, OUTPUT_SPACE, "the entries of the next material")
    require_free_space(opts.scratch or tempfile.gettempdir(), SCRATCH_SPACE,
                       "the GPAW scratch files of the next material (set scratch=... for another folder)")


def _compute_one(item: InputItem, opts: ComputeOptions, settings: LadderSettings, python: str):
    t0 = time.perf_counter()
    try:
        entries, result = _compute_entries(item, opts, settings, python)
    except (MaterialFailed, ValueError) as err:
        err.seconds = time.perf_counter() - t0  # errors.csv states what a failure cost, not 0
        raise
    return entries, result, time.perf_counter() - t0


def _compute_entries(item: InputItem, opts: ComputeOptions, settings: LadderSettings, python: str):
    try:
        structure = read_structure(item)
    except ValueError as err:  # the input's own problem: never retried
        raise MaterialFailed("unreadable", str(err)) from None
    if opts.max_sites is not None and len(structure) > opts.max_sites:
        raise MaterialFailed("too_large", f"{len(structure)} sites > max_sites={opts.max_sites}")
    result = run_material(structure, settings, opts.level, python=python, time_limit=opts.time_limit_s,
                          scratch=opts.scratch, nice=opts.nice, mpi_procs=int(opts.mpi_procs))
    data = _entry_data(item)
    entries = {"ipa": ipa_entry(structure, result, settings, item.id, data, opts.level)}
    if opts.level == "both":
        entries["rpa"] = rpa_entry(structure, result, settings, item.id, data)
    return entries, result


def compute(opts: ComputeOptions, settings: LadderSettings | None = None, progress: bool | None = None) -> dict:
    """Compute every selected material of ``opts.input`` into ``opts.output``; returns the summary."""
    settings = settings or LadderSettings()
    validate_options(opts)
    python, version = gpaw_python(opts.gpaw_python)
    out = Path(opts.output)
    out.mkdir(parents=True, exist_ok=True)
    # One command per output folder at a time (a second one would compute the same materials): a whole-folder run
    # holds the folder's lock alone; the chunks of an array job share it, each holding its own chunk's lock too.
    suffix = "" if not opts.chunk else "-" + str(opts.chunk).replace("/", "-of-")
    with contextlib.ExitStack() as locks:
        locks.enter_context(file_lock(out / ".compute.lock", blocking=False, shared=bool(opts.chunk),
                                      what=f"output folder {out}"))
        if opts.chunk:
            locks.enter_context(file_lock(out / f".compute{suffix}.lock", blocking=False,
                                          what=f"output folder {out} (chunk {opts.chunk})"))
        check_space(opts)
        workdir = Workdir(out, opts.level, opts.chunk)
        todo, dropped = select(iter_inputs(opts.input, opts.recursive), opts, workdir)
        for item, reason, message in dropped:
            if item.id not in workdir.known:
                workdir.record_failure(item, reason, message, 0.0)
        if opts.limit is not None:
            todo = todo[: int(opts.limit)]
        log.info("GPAW %s (%s): %d materials to compute (level=%s, %d worker%s) -> %s", version, python, len(todo),
                 opts.level, opts.workers, "s" if opts.workers > 1 else "", out)
        drift = settings_drift(out, settings)
        if drift and todo:
            log.warning("%s: the previous run into it used %s; this run uses %s. The folder will hold both (each "
                        "entry records its settings); if that is not meant, stop (Ctrl-C) and pass the same settings",
                        out, ", ".join(f"{k}={v[0]}" for k, v in drift.items()),
                        ", ".join(f"{k}={v[1]}" for k, v in drift.items()))
        atomic_write_text(json.dumps(settings.as_dict(), indent=1), out / RUN_SETTINGS)
        stats = _run(todo, opts, settings, python, workdir, progress)
        summary = _summary(out, opts, settings, version, stats, workdir)
    return summary


def settings_drift(out: Path, settings: LadderSettings) -> dict[str, tuple]:
    """``setting -> (before, now)`` where the previous run into ``out`` (its ``run_settings.json``) used other settings
    than ``settings``: a resumed run that forgot e.g. ``settings.pw_cutoff_eV=350`` would otherwise fill the folder
    with another rung unnoticed (materials are never recomputed, so nothing else would tell). The entries' own
    settings cannot say it: a folder may hold several on purpose, and restored entries are all written at once."""
    try:
        before = json.loads((out / RUN_SETTINGS).read_text())
    except (OSError, ValueError):  # a first run, or a folder restored from a pack
        return {}
    now = settings.as_dict()
    return {k: (before[k], now[k]) for k in now if k in before and before[k] != now[k]}


def _run(todo: list[InputItem], opts: ComputeOptions, settings: LadderSettings, python: str, workdir: Workdir,
         progress: bool | None) -> dict:
    from tqdm import tqdm

    stats: dict[str, Any] = {"computed": 0, "failed": 0, "seconds": [], "wall": 0.0, "start": time.perf_counter()}
    bar = tqdm(total=len(todo), desc="computing rungs", unit="mat", file=sys.stderr,
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    pending = iter(todo)
    with ThreadPoolExecutor(max(1, int(opts.workers))) as pool:
        running = {}
        for item in pending:
            running[pool.submit(_compute_one, item, opts, settings, python)] = item
            if len(running) >= opts.workers:
                break
        try:
            _drain(running, pending, pool, opts, settings, python, workdir, stats, bar)
        except KeyboardInterrupt:
            # Ctrl-C: only this thread hears it. Stop the workers now (not after their time limit), keep what
            # finished, record nothing against the stopped materials (a later run computes them).
            stopped = stop_workers()
            for fut, item in running.items():
                try:
                    entries, _, _ = fut.result(timeout=60)
                except BaseException:  # stopped mid-way (WorkerStopped) or failed: not this run's to record
                    continue
                workdir.write_entries(item.id, entries)
                stats["computed"] += 1
            bar.close()
            raise Interrupted(stats["computed"], stopped) from None
    bar.close()
    stats["wall"] = time.perf_counter() - stats["start"]
    return stats


def progress_line(done: int, total: int, elapsed_s: float) -> str:
    """``"12/1866, about 14.2 h left"``: where a run stands, for its log (a background run has no progress bar).
    The estimate extrapolates this run's wall time per material (all workers together) to the ones left."""
    left = total - done
    if not done or not left:
        return f"{done}/{total}"
    eta = elapsed_s / done * left
    return f"{done}/{total}, about " + (f"{eta / 3600:.1f} h" if eta >= 5400 else f"{eta / 60:.0f} min") + " left"


class Interrupted(KeyboardInterrupt):
    """The command was interrupted (Ctrl-C): the workers are stopped, what finished is written."""

    def __init__(self, computed: int, stopped: int) -> None:
        super().__init__(f"interrupted: {computed} materials computed and written by this run, {stopped} running "
                         f"stopped (computed again by the next run); run the same command to continue")


def _drain(running: dict, pending, pool, opts: ComputeOptions, settings: LadderSettings, python: str,
           workdir: Workdir, stats: dict, bar) -> None:
    """Collect finished materials and start the next ones until none is left (or the disk is nearly full: then the
    running ones finish and the run stops, naming the folder)."""
    short_of_space: DiskFullError | None = None
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in finished:
            item = running.pop(fut)
            try:
                entries, result, seconds = fut.result()
            except MaterialFailed as err:
                workdir.record_failure(item, err.reason, str(err), getattr(err, "seconds", 0.0))
                stats["failed"] += 1
                log.info("%s: not computed (%s: %s) [%s]", item.id, err.reason, err, _where(bar, stats))
            except ValueError as err:  # after the DFT (reading its spectra, making the entries): worth a retry
                workdir.record_failure(item, "after_dft", str(err), getattr(err, "seconds", 0.0))
                stats["failed"] += 1
                log.info("%s: not computed (after_dft: %s) [%s]", item.id, err, _where(bar, stats))
            else:
                workdir.write_entries(item.id, entries)
                stats["computed"] += 1
                stats["seconds"].append((len(result.positions), result.core_seconds, result.times))
                if not bar.disable:
                    bar.set_postfix_str(f"{item.id} {result.core_seconds:.0f}s")
                else:
                    log.info("%s: %d sites, %.1f core-s (%s) [%s]", item.id, len(result.positions),
                             result.core_seconds,
                             ", ".join(f"{k} {v:.1f}" for k, v in result.times.items() if k not in ("total", "wall")),
                             _where(bar, stats))
            bar.update()
            if short_of_space is not None:
                continue  # no new material: the running ones finish and are written, then the run stops
            try:
                check_space(opts)
            except DiskFullError as err:
                short_of_space = err
                if running:
                    log.warning("the disk is nearly full: %d running material(s) finish and are written, then the run "
                                "stops", len(running))
                continue
            nxt = next(pending, None)
            if nxt is not None:
                running[pool.submit(_compute_one, nxt, opts, settings, python)] = nxt
    if short_of_space is not None:
        raise short_of_space


def _where(bar, stats: dict) -> str:
    """The progress line after the material being logged (a disabled bar counts nothing: the stats do)."""
    return progress_line(stats["computed"] + stats["failed"], bar.total, time.perf_counter() - stats["start"])


def _summary(out: Path, opts: ComputeOptions, settings: LadderSettings, version: str, stats: dict,
             workdir: Workdir) -> dict:
    """Counts, throughput and cost per material (this run and the folder as a whole), as summary.json."""
    import numpy as np

    reasons: dict[str, int] = {}
    for row in workdir.known.values():
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    by_sites: dict[int, list[float]] = {}
    for nsites, secs, _ in stats["seconds"]:
        by_sites.setdefault(nsites, []).append(secs)
    n_ipa = len(list((out / "ipa").glob("*.json")))
    n_rpa = len(list((out / "rpa").glob("*.json"))) if (out / "rpa").exists() else 0
    summary = {
        "gpaw_version": version, "level": opts.level, "settings": settings.as_dict(),
        "this_run": {"computed": stats["computed"], "failed": stats["failed"], "wall_s": round(stats["wall"], 1),
                     "materials_per_hour": round(3600 * stats["computed"] / stats["wall"], 1) if stats["wall"] else None,
                     "core_seconds_per_material": round(float(np.mean([s for _, s, _ in stats["seconds"]])), 1)
                     if stats["seconds"] else None,
                     "core_seconds_by_sites": {str(k): round(float(np.mean(v)), 1) for k, v in sorted(by_sites.items())}},
        "folder": {"ipa_entries": n_ipa, "rpa_entries": n_rpa, "not_computed": reasons},
    }
    atomic_write_text(json.dumps(summary, indent=2) + "\n", out / f"summary{workdir.suffix}.json")
    return summary


def options_from_config(cfg) -> tuple[ComputeOptions, LadderSettings]:
    """The command's Hydra config -> (options, settings)."""
    from omegaconf import OmegaConf

    c = OmegaConf.to_container(cfg, resolve=True)
    names = {f.name for f in fields(ComputeOptions)}
    opts = validate_options(ComputeOptions(**{k: v for k, v in c.items() if k in names}))
    settings = LadderSettings(**(c.get("settings") or {}))
    return opts, settings


def _whole(value: Any, name: str, low: int = 1, high: int | None = None, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name}={value!r}: give a whole number, {span}" + (" (or null)" if optional else ""))
    return value


def validate_options(opts: ComputeOptions) -> ComputeOptions:
    """Every setting checked before any work, one line each: a mistake in a setting must never be recorded as the
    failure of every material (``mpi_procs=two`` once marked a whole input ``unreadable``)."""
    from ..utils.parallel import usable_cores

    if opts.level not in ("ipa", "both"):
        raise ValueError(f"level={opts.level!r}: use ipa or both")
    if opts.order not in ("input", "size"):
        raise ValueError(f"order={opts.order!r}: use input or size")
    _whole(opts.workers, "workers")
    _whole(opts.mpi_procs, "mpi_procs")
    cores = usable_cores()
    if opts.workers * opts.mpi_procs > cores:
        raise ValueError(f"workers={opts.workers} x mpi_procs={opts.mpi_procs} needs {opts.workers * opts.mpi_procs} "
                         f"cores; this machine gives this process {cores}")
    _whole(opts.nice, "nice", 0, 19)
    _whole(opts.max_sites, "max_sites", optional=True)
    _whole(opts.limit, "limit", optional=True)
    for name in ("time_limit_s", "min_gap_eV"):
        value = getattr(opts, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or (name == "time_limit_s" and value <= 0)):
            raise ValueError(f"{name}={value!r}: give a {'positive ' if name == 'time_limit_s' else ''}number (or null)")
    if opts.chunk is not None:
        parts = str(opts.chunk).split("/")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
            raise ValueError(f"chunk={opts.chunk!r}: give i/n with whole numbers 0 <= i < n (a SLURM array task: "
                             f"${{oc.env:SLURM_ARRAY_TASK_ID}}/n)")
    return opts
