"""The domain a model was trained on, and whether a structure lies in it.

A model is only as good as what it has seen: on the built-in ladder that is main-group elements of rows 1-5 in
cells of 1-6 sites. ``training_domain`` records the elements, the sites per cell and the volume per site of the
training materials (saved in checkpoints and model cards by the data module); ``outside`` says, for a predicted
structure, every way it lies outside them, in words (an empty string: inside). Predictions carry it as the column
``outside_domain`` and count it in their summary, so that an 8-site crystal on a model of 1-6-site cells, or an
element the model never saw, is never reported silently as if it were like the rest.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

#: Margin on the training range of the volume per site before a structure is flagged (10 %: cells of the same
#: chemistry differ by a few percent between codes and functionals).
VOLUME_MARGIN = 0.10


@lru_cache(maxsize=65536)
def elements_of(formula: str) -> tuple[str, ...]:
    """The element symbols of a formula (``"Mg2SiO4"`` -> ``("Mg", "O", "Si")``)."""
    from pymatgen.core import Composition

    return tuple(sorted(el.symbol for el in Composition(formula).elements))


def training_domain(formulas: Sequence[str], nsites: Sequence[int],
                    volumes: Sequence[float] | None = None) -> dict[str, Any]:
    """The domain of a training set: ``elements`` (sorted), ``sites`` [min, max] and, where the volumes are known,
    ``volume_per_site`` [min, max] (Å³)."""
    elements = sorted({el for f in formulas for el in elements_of(f)})
    out: dict[str, Any] = {"elements": elements, "sites": [int(min(nsites)), int(max(nsites))] if len(nsites) else None,
                           "volume_per_site": None}
    if volumes is not None and len(volumes):
        out["volume_per_site"] = [round(float(min(volumes)), 3), round(float(max(volumes)), 3)]
    return out


def outside(domain: dict[str, Any] | None, formula: str, nsites: int, volume_per_site: float | None = None) -> str:
    """Every way a structure lies outside ``domain``, ``"; "``-joined (``""``: inside, or no domain recorded)."""
    if not domain:
        return ""
    why = []
    unseen = [el for el in elements_of(formula) if el not in set(domain.get("elements") or [])]
    if unseen and domain.get("elements"):
        why.append(f"element{'s' if len(unseen) > 1 else ''} never in training: {', '.join(unseen)}")
    sites = domain.get("sites")
    if sites and not sites[0] <= nsites <= sites[1]:
        why.append(f"{nsites} sites (training cells: {sites[0]}-{sites[1]})")
    vol = domain.get("volume_per_site")
    if vol and volume_per_site is not None and volume_per_site == volume_per_site:  # not NaN
        lo, hi = vol[0] * (1 - VOLUME_MARGIN), vol[1] * (1 + VOLUME_MARGIN)
        if not lo <= volume_per_site <= hi:
            why.append(f"{volume_per_site:.1f} Å³ per site (training: {vol[0]:.1f}-{vol[1]:.1f})")
    return "; ".join(why)
