"""The documentation cannot rot: the site builds strictly and looks right in a real browser, every command of
the README and docs/ composes into a valid config, every Python block runs, and the README's quickstart trains
(at debug=fast size)."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import ROOT, Block, blocks, pages

#: Commands the docs show, and the config each composes.
CONFIGS = {"optimate_pl": "train", "optimate-pl": "train", "optimate-pl-predict": "predict",
           "optimate-pl-compute": "compute", "optimate-pl-import": "import"}
#: Where the screenshots of the built site are kept for a person to look at (CI artefacts).
ARTIFACTS = ROOT / "test-artifacts" / "docs"


def shell_commands(block: Block) -> list[tuple[str, list[str]]]:
    """``(program, arguments)`` of each command line of a shell block (continuations joined, comments and
    environment assignments dropped; ``srun`` stripped)."""
    text = re.sub(r"\\\n\s*", " ", block.body)
    out = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        while words and (re.match(r"^[A-Z_]+=", words[0]) or words[0] in ("srun", "export")):
            words = words[1:]
        if len(words) >= 3 and words[:2] == ["python", "-m"]:
            out.append((words[2], words[3:]))
        elif words and (words[0].startswith("optimate-pl") or words[0] == "make"):
            out.append((words[0], words[1:]))
    return out


def all_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, program, arguments)`` of every command in the README and docs/."""
    return [(str(b), prog, args) for page in pages() for b in blocks(page) if b.lang in ("bash", "sh")
            for prog, args in shell_commands(b)]


def compose_args(program: str, args: list[str]):
    """The command's config composed with ``args`` (placeholders ``...`` dropped; a sweep takes its first value)."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in args if a not in ("...", "-m", "--multirun") and not a.startswith("--")]
    parsed = OverridesParser.create().parse_overrides(args)
    plain = []
    for o in parsed:
        if o.is_sweep_override():
            plain.append(f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}")
        else:
            plain.append(o.input_line)
    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        return compose(CONFIGS[program], overrides=plain, return_hydra_config=True)


def test_the_docs_show_commands_at_all():
    found = all_commands()
    assert len(found) > 40 and {p for _, p, _ in found} >= {"optimate_pl", "optimate-pl-predict", "make"}
    from hydra.errors import HydraException

    with pytest.raises(HydraException):  # the check can fail: a group option that does not exist
        compose_args("optimate_pl", ["strategy=bogus"])
    assert compose_args("optimate_pl", ["-m", "strategy=dl,tl", "..."]).strategy.name == "dl"  # a sweep's first value


def test_every_documented_command_is_valid():
    """Each ``python -m optimate_pl ...`` / ``optimate-pl-* ...`` line composes (every group, key and value exists
    and has the right type); each ``make`` target exists; each module run with ``python -m`` exists. One test for
    all (Hydra's set-up per command would cost more than the checks), listing every failure with its page:line."""
    import importlib.util

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from optimate_pl.config import ConfigError
    from optimate_pl.config.schema import validate_config

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    problems = []
    for where, program, args in all_commands():
        if program == "make":
            missing = {a for a in args if "=" not in a} - targets
            if missing:
                problems.append(f"{where}: make {' '.join(args)}: no target {sorted(missing)}")
        elif program not in CONFIGS:
            if importlib.util.find_spec(program) is None:
                problems.append(f"{where}: python -m {program}: no such module")
        else:
            try:
                cfg = compose_args(program, args)
                if CONFIGS[program] == "train":
                    validate_config(cfg)  # types and values (paths the docs name, like /data/rpa_db, need not exist)
            except ConfigError as err:
                if "no CUDA GPU is visible" not in str(err):  # a GPU command on this CPU machine: valid here
                    problems.append(f"{where}: {program} {' '.join(args)}: {err}")
            except (HydraException, OmegaConfBaseException, ValueError) as err:
                problems.append(f"{where}: {program} {' '.join(args)}: {type(err).__name__}: {str(err)[:300]}")
    assert not problems, "\n".join(problems)


def _namespace(tmp_path: Path) -> dict:
    """What the Python examples call ``checkpoint`` (a weight file) and ``ensemble`` (an ensemble folder)."""
    import torch

    from optimate_pl.models import Optimate
    from tests.conftest import SMALL_NET

    folder = tmp_path / "ensemble"
    folder.mkdir()
    for seed in (0, 1):
        torch.manual_seed(seed)
        torch.save(Optimate(**SMALL_NET).state_dict(), folder / f"member{seed}.pt")
    (folder / "ensemble.json").write_text(json.dumps({
        "members": [{"checkpoint": f"member{s}.pt", "seed": s} for s in (0, 1)],
        "calibration": {"level": 0.9, "scale": 2.0, "floor": 0.01, "sc_error_scale": 1.0, "n_validation": 50}}))
    return {"checkpoint": str(folder / "member0.pt"), "ensemble": str(folder)}


PYTHON_BLOCKS = [b for page in pages() for b in blocks(page) if b.lang == "python"]


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=str)
def test_every_python_block_runs(block, tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_block_{block.line}", **_namespace(tmp_path)}
    exec(compile(block.body, str(block), "exec"), namespace)  # noqa: S102 - our own documentation's examples


@pytest.mark.slow
def test_the_readme_quickstart_trains_and_predicts(tmp_path, cache_dir, cfg_train, rocksalt_nacl):
    """The README's quickstart as written, each training at debug=fast size (one batch of everything)."""
    from optimate_pl.inference.screening import run_prediction
    from optimate_pl.training.stages import run

    (quickstart,) = [b for b in blocks(ROOT / "README.md") if "python -m optimate_pl strategy=tl" in b.body]
    commands = shell_commands(quickstart)
    assert [p for p, _ in commands] == ["optimate_pl"] * 3 + ["optimate-pl-predict"]
    metrics = None
    for i, (_, args) in enumerate(commands[:3]):
        args = [a for a in args if not a.startswith("hydra.")]  # the run folder: tmp_path's here
        metrics = run(cfg_train(tmp_path / f"run{i}", *args, "debug=fast", "data.source=gpaw",
                                f"paths.checkpoint_dir={tmp_path / 'ckpts'}"))
        assert metrics["best_checkpoint"] and "test/sc_median" in metrics
    cifs = tmp_path / "my_cifs"
    cifs.mkdir()
    rocksalt_nacl().to(filename=str(cifs / "nacl.cif"))
    summary = run_prediction(metrics["best_checkpoint"], cifs, tmp_path / "predictions", workers=0)
    assert summary["n_predicted"] == 1


@pytest.mark.slow
def test_the_site_builds_strictly_and_renders(tmp_path):
    """`mkdocs build --strict` (a warning is an error: a broken link, a missing page, an API name that moved), then
    the home page and a guide in headless Chromium, kept as screenshots under test-artifacts/docs/."""
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    home = (site / "index.html").read_text()
    assert "Learn optical spectra of crystals" in home and "guides/own-data/" in home
    assert "model=visnet" in (site / "reference" / "configs" / "index.html").read_text()  # generated from conf/
    api = (site / "reference" / "python-api" / "index.html").read_text()
    assert "load_model" in api and "training_domain" in api  # docstrings rendered by mkdocstrings
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser (make system-deps installs chromium)")
    import matplotlib.image as mpimg

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("home", "index.html"), ("guide-own-data", "guides/own-data/index.html")):
        shot = ARTIFACTS / f"{name}.png"
        shot.unlink(missing_ok=True)
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,1000", f"--screenshot={shot}", (site / page).as_uri()],
                       capture_output=True, timeout=120, cwd=tmp_path)
        pixels = mpimg.imread(shot)
        assert pixels.shape[:2] == (1000, 1280), name
        # A rendered page (text, navigation, the figure), not a blank or an error page: many distinct shades.
        assert pixels[..., :3].std() > 0.1 and len({tuple(p) for p in pixels[::20, ::20, :3].reshape(-1, 3)}) > 20
