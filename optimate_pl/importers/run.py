"""The import command's work: find a code's output files, read each material in parallel, write its entries.

Output, the same layout as ``optimate-pl-compute`` (so ``data.source=files data.root=<output>`` trains on it):
``<output>/ipa/<id>.json`` and ``<output>/rpa/<id>.json`` (the authors' database formats), ``errors.csv``
(one line per material not imported: its id, file and the reason) and ``summary.json``. A material's id is
its folder relative to the input (``runs/Si/vasprun.xml`` -> ``Si``; ``a/b/`` -> ``a-b``), or the file's stem
for files side by side in one folder. Importing again overwrites the entries of the materials it imports (never
an entry imported from another file: ``id_prefix`` tells two codes' materials apart); ``summary.json`` lists every
import into the folder and ``errors.csv`` keeps a failure until that material is imported.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from glob import glob
from pathlib import Path

from ..data.entries import entry_file_name
from ..data.inputs import structure_beside
from ..utils.atomic import atomic_write_text
from ..utils.parallel import parallel_map
from . import gpaw, vasp, yambo
from .material import ImportOptions, ImportRefused, to_entries

log = logging.getLogger(__name__)

CODES = ("vasp", "yambo", "gpaw")


class ImportInputError(ValueError):
    """The input as a whole cannot be imported (nothing found, two files claiming one id)."""


@dataclass
class Job:
    """One material to import: its id and the file(s) holding its spectra."""

    mat_id: str
    paths: list[str]


def _is_code_file(code: str, path: Path) -> bool:
    name = path.name
    if code == "vasp":
        return "vasprun" in name and ".xml" in name
    if code == "yambo":
        return name.startswith("o-") and ".eps_q1" in name
    return name.endswith(".csv")


def _yambo_choice(paths: list[Path]) -> list[Path]:
    """Of a folder's Yambo files, the RPA one (it holds both rungs) or else the IPA one; others are not spectra."""
    for tag in ("inv_rpa_dyson", "eps_q1_ip"):
        hits = [p for p in paths if p.name.endswith(tag)]
        if hits:
            return hits
    return paths


def find_jobs(code: str, pattern: str) -> list[Job]:
    """The materials of ``pattern`` (a file, a folder searched recursively, or a glob such as ``runs/**/vasprun.xml``)."""
    if code not in CODES:
        raise ImportInputError(f"from={code}: use one of {', '.join(CODES)}")
    path = Path(pattern).expanduser()
    if path.is_file():
        files, base = [path], path.parent
    elif path.is_dir():
        files, base = sorted(p for p in path.rglob("*") if p.is_file() and _is_code_file(code, p)), path
    else:
        files = sorted(Path(p) for p in glob(str(path), recursive=True) if Path(p).is_file())
        base = Path(glob_base(str(path)))
    if not files:
        raise ImportInputError(f"no {code} output found at {pattern}" + {
            "vasp": " (vasprun.xml files)", "yambo": " (o-*.eps_q1_* files)", "gpaw": " (CSV files)"}[code])
    groups: dict[tuple[Path, str], list[Path]] = {}
    for f in files:
        stem = f.name[: -len(".csv")] if code == "gpaw" else ""
        if code == "gpaw" and gpaw.direction_of(f):
            stem = stem[:-2]
        groups.setdefault((f.parent, stem), []).append(f)
    jobs, seen = [], {}
    for (folder, stem), paths in sorted(groups.items()):
        if code == "yambo":
            paths = _yambo_choice(paths)
        rel = folder.resolve().relative_to(base.resolve()) if folder.resolve().is_relative_to(base.resolve()) else None
        parts = list(rel.parts) if rel is not None else []
        name = "-".join(parts) if parts else folder.resolve().name
        siblings = sum(1 for (f2, _) in groups if f2 == folder)
        if siblings > 1 and stem:
            name = f"{name}-{stem}" if parts else stem
        if code == "vasp" and len(paths) > 1:
            raise ImportInputError(f"{len(paths)} vasprun files in {folder} ({', '.join(p.name for p in paths)}): one "
                                   f"material a folder; pass the one to import")
        if code == "yambo" and len(paths) > 1:
            raise ImportInputError(f"{len(paths)} Yambo spectra in {folder} ({', '.join(p.name for p in paths)}): one "
                                   f"material a folder; pass the one to import")
        if name in seen:
            raise ImportInputError(f"two inputs would be material {name}: {seen[name]} and {folder}")
        seen[name] = folder
        jobs.append(Job(name, [str(p) for p in paths]))
    return jobs


def glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (``runs/**/vasprun.xml`` -> ``runs``)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if any(c in part for c in "*?["):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def read_job(job: Job, code: str, structure: str | None, vasp_kind: str):
    """The :class:`~.material.ImportedSpectra` of one job (raises :class:`ImportRefused` / ``ValueError``)."""
    if code == "vasp":
        return vasp.read_vasprun(job.paths[0], vasp_kind)
    if code == "yambo":
        yambo.check_name(job.paths[0])
    struct = structure_beside(job.paths[0], structure)
    if code == "yambo":
        return yambo.read_yambo(job.paths[0], struct)
    return gpaw.read_gpaw_csv(job.paths, struct)


def _claimed_by_other(path: Path, source: str) -> str | None:
    """The file an existing entry at ``path`` was imported from, where that is not ``source`` (else ``None``)."""
    try:
        previous = json.loads(path.read_text()).get("parameters", {}).get("imported_from")
    except (OSError, ValueError):
        return None
    return previous if previous and previous != source else None


def import_job(job: Job, code: str, opts: ImportOptions, structure: str | None, vasp_kind: str,
               output: str) -> dict:
    """Import one material: write its entries; returns what happened (never raises for a bad file)."""
    out = Path(output)
    for rung in ("ipa", "rpa"):
        other = _claimed_by_other(out / rung / entry_file_name(job.mat_id), str(Path(job.paths[0]).resolve()))
        if other:  # a second code's "Si" must not overwrite the first's
            return {"id": job.mat_id, "file": job.paths[0], "ok": False,
                    "reason": f"{out / rung / job.mat_id}.json was imported from {other}: import into another "
                              f"folder, or give id_prefix= to tell them apart"}
    try:
        spectra = read_job(job, code, structure, vasp_kind)
        spectra.source = str(Path(spectra.source).resolve())
        ipa, rpa, notes = to_entries(spectra, job.mat_id, opts)
    except (ImportRefused, ValueError) as err:
        return {"id": job.mat_id, "file": job.paths[0], "ok": False, "reason": str(err)}
    written = []
    for rung, entry in (("ipa", ipa), ("rpa", rpa)):
        if entry is not None:
            atomic_write_text(json.dumps(entry), out / rung / entry_file_name(job.mat_id))
            written.append(rung)
    return {"id": job.mat_id, "file": job.paths[0], "ok": True, "rungs": written, "notes": notes,
            "formula": spectra.structure.composition.reduced_formula}


def import_files(code: str, input: str, output: str, opts: ImportOptions, structure: str | None = None,
                 vasp_kind: str = "density", workers: int | None = None, id_prefix: str = "") -> dict:
    """Import every material of ``input``; writes the entries, ``errors.csv`` and ``summary.json`` to ``output``."""
    t0 = time.perf_counter()
    jobs = find_jobs(code, input)
    if id_prefix:
        if "/" in id_prefix or id_prefix.startswith("."):
            raise ImportInputError(f"id_prefix={id_prefix}: a file-name prefix cannot hold '/' or start with '.'")
        jobs = [Job(f"{id_prefix}{j.mat_id}", j.paths) for j in jobs]
    out = Path(output).expanduser()
    (out / "ipa").mkdir(parents=True, exist_ok=True)
    results = parallel_map(partial(import_job, code=code, opts=opts, structure=structure, vasp_kind=vasp_kind,
                                   output=str(out)), jobs, workers, desc=f"importing {code}")
    failed = [r for r in results if not r["ok"]]
    done = [r for r in results if r["ok"]]
    _write_errors(out / "errors.csv", failed, {r["id"] for r in results})
    for r in failed:
        log.warning("%s (%s): not imported: %s", r["id"], r["file"], r["reason"])
    this = {"code": code, "input": str(input), "options": asdict(opts), "materials": len(jobs),
            "imported": len(done), "not_imported": len(failed),
            "ipa_entries": sum("ipa" in r["rungs"] for r in done), "rpa_entries": sum("rpa" in r["rungs"] for r in done),
            "wall_s": round(time.perf_counter() - t0, 2), "imported_ids": [r["id"] for r in done],
            "notes": {r["id"]: r["notes"] for r in done if r["notes"]}}
    # The folder's summary keeps every import into it (several codes may share one database folder).
    previous = []
    try:
        previous = json.loads((out / "summary.json").read_text()).get("imports", [])
    except (OSError, ValueError, AttributeError):
        pass
    folder = {"ipa_entries": len(list((out / "ipa").glob("*.json"))),
              "rpa_entries": len(list((out / "rpa").glob("*.json"))) if (out / "rpa").is_dir() else 0}
    atomic_write_text(json.dumps({**this, "folder": folder, "imports": [*previous, {k: v for k, v in this.items()
                                                                                   if k != "notes"}]}, indent=2) + "\n",
                      out / "summary.json")
    return {**this, "folder": folder}


def _write_errors(path: Path, failed: list[dict], seen: set[str]) -> None:
    """``errors.csv`` of the folder: this import's failures, and earlier imports' for materials not tried again."""
    rows = {}
    if path.is_file():
        rows = {r["id"]: r for r in csv.DictReader(path.open(newline="")) if r.get("id") not in seen}
    rows.update({r["id"]: {k: r[k] for k in ("id", "file", "reason")} for r in failed})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "file", "reason"])
    writer.writeheader()
    writer.writerows(rows.values())
    atomic_write_text(buf.getvalue(), path)
