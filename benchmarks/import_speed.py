"""How fast ``optimate-pl-import`` takes a folder of vasprun.xml files (issue #38: 1,000 in under a minute).

    python benchmarks/import_speed.py [--n 1000] [--workers 2] [--out benchmarks/import_speed.md]

Makes ``n`` run folders, each holding a link to one of the real LOPTICS files of ``tests/data/files/vasp`` (Ge:
2001 frequencies to 98.5 eV, 1.6 MB; MgSe: 1000 to 40.6 eV, 0.6 MB; alternating), imports them with
``broaden_to=0.3`` (both need the Lorentzian) and reports the wall time and the per-material stages of one file.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

FILES = Path(__file__).parents[1] / "tests" / "data" / "files" / "vasp"


def stages(path: Path) -> dict[str, float]:
    """Seconds of each step of one material, in this process."""
    import json

    from optimate_pl.importers.material import ImportOptions, to_entries
    from optimate_pl.importers.vasp import read_vasprun

    t0 = time.perf_counter()
    sp = read_vasprun(path)
    t1 = time.perf_counter()
    ipa, _, _ = to_entries(sp, "x", ImportOptions(broaden_to=0.3))
    t2 = time.perf_counter()
    json.dumps(ipa)
    t3 = time.perf_counter()
    return {"parse (pymatgen Vasprun)": t1 - t0, "grid, broadening, entry": t2 - t1, "JSON": t3 - t2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    from optimate_pl.importers import ImportOptions, import_files
    from optimate_pl.utils.parallel import default_workers

    sources = [FILES / "Ge" / "vasprun.xml.gz", FILES / "MgSe" / "vasprun.xml.gz"]
    per_file = {s.parent.name: stages(s) for s in sources}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        for i in range(args.n):
            folder = runs / f"m{i:05d}"
            folder.mkdir(parents=True)
            (folder / "vasprun.xml.gz").symlink_to(sources[i % 2])
        t0 = time.perf_counter()
        summary = import_files("vasp", str(runs), str(Path(tmp) / "db"), ImportOptions(broaden_to=0.3),
                               workers=args.workers)
        wall = time.perf_counter() - t0
    workers = args.workers or default_workers()
    lines = [f"# optimate-pl-import speed ({time.strftime('%Y-%m-%d')}, `python benchmarks/import_speed.py --n {args.n}`)",
             "", f"{summary['imported']} of {args.n} vasprun.xml files imported in **{wall:.1f} s** with {workers} worker "
             f"processes ({args.n / wall:.1f} files/s; goal: 1,000 in under 60 s).", "",
             "| one file | " + " | ".join(next(iter(per_file.values()))) + " |", "|---|" + "---|" * 3]
    lines += [f"| {name} | " + " | ".join(f"{v * 1000:.0f} ms" for v in st.values()) + " |" for name, st in per_file.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
