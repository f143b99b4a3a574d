"""Per-element values drawn on the periodic table (rows 1-5: every element the model can take lies there)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element

#: H to Xe: the periods the paper's materials come from.
ELEMENTS = [Element.from_Z(z) for z in range(1, 55)]


def element_table(formulas: Iterable[str], values: Iterable[float] | None = None, how: str = "count") -> dict[str, float]:
    """Per element: how many materials contain it (``count``), or the median of ``values`` over them (``median``)."""
    groups: dict[str, list[float]] = {}
    values = list(values) if values is not None else None
    for k, formula in enumerate(formulas):
        for el in Composition(formula).elements:
            groups.setdefault(el.symbol, []).append(values[k] if values is not None else 1.0)
    if how == "count":
        return {el: float(len(v)) for el, v in groups.items()}
    return {el: float(np.median(v)) for el, v in groups.items()}


def draw_periodic_table(ax, values: dict[str, float], label: str, cmap: str = "viridis", fmt: str = "{:.0f}",
                        vmin: float | None = None, vmax: float | None = None) -> Any:
    """Cells coloured by ``values`` (grey where an element has none); returns the colour mapping for a colorbar."""
    import matplotlib as mpl
    from matplotlib.patches import Rectangle

    present = [v for v in values.values() if np.isfinite(v)]
    norm = mpl.colors.Normalize(vmin=min(present) if vmin is None and present else vmin,
                                vmax=max(present) if vmax is None and present else vmax)
    colours = mpl.colormaps[cmap]
    for el in ELEMENTS:
        x, y = el.group - 1, el.row - 1
        value = values.get(el.symbol)
        face = colours(norm(value)) if value is not None and np.isfinite(value) else (0.93, 0.93, 0.93)
        ax.add_patch(Rectangle((x, -y), 0.95, -0.95, facecolor=face, edgecolor="white"))
        dark = value is not None and np.isfinite(value) and sum(face[:3]) < 1.5
        ax.text(x + 0.47, -y - 0.35, el.symbol, ha="center", va="center", fontsize=7,
                color="white" if dark else "black", weight="bold")
        if value is not None and np.isfinite(value):
            ax.text(x + 0.47, -y - 0.72, fmt.format(value), ha="center", va="center", fontsize=5,
                    color="white" if dark else "black")
    ax.set_xlim(-0.1, 18)
    ax.set_ylim(-5.1, 0.1)
    ax.set_aspect("equal")
    ax.axis("off")
    mapping = mpl.cm.ScalarMappable(norm=norm, cmap=colours)
    ax.figure.colorbar(mapping, ax=ax, fraction=0.025, pad=0.01, label=label)
    return mapping
