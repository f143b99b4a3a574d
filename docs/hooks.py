"""MkDocs hooks: the configuration reference is generated from ``conf/`` at build time, so it never drifts from
the files the commands read."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- configs -->"


def _first_comment(text: str) -> str:
    """The leading comment lines of a YAML file, as one paragraph."""
    lines = []
    for line in text.splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def configs_markdown(conf: Path = ROOT / "conf") -> str:
    """Every command config and config group of ``conf/`` as Markdown: a section per group, each option's leading
    comment and its YAML."""
    out = ["## Commands", ""]
    for path in sorted(conf.glob("*.yaml")):
        text = path.read_text()
        out += [f"### `{path.stem}`", "", _first_comment(text), "", "```yaml", text.rstrip(), "```", ""]
    for group in sorted(p for p in conf.iterdir() if p.is_dir() and not p.name.startswith("__")):
        options = sorted(group.glob("*.yaml"))
        if not options:
            continue
        out += [f"## `{group.name}`", "", "Options: " + ", ".join(f"`{group.name}={p.stem}`" for p in options), ""]
        for path in options:
            text = path.read_text()
            out += [f"### `{group.name}={path.stem}`", "", _first_comment(text), "", "```yaml", text.rstrip(), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - the hook's signature
    if MARKER in markdown:
        return markdown.replace(MARKER, configs_markdown())
    return markdown
