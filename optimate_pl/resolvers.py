"""OmegaConf resolvers used by the configs (registered on import of :mod:`optimate_pl.train`).

They let a sweep search over scalars (width, depth, heads) that become the list-valued
architecture arguments of :class:`~optimate_pl.models.Optimate`.
"""
from __future__ import annotations

from omegaconf import OmegaConf


def repeat(value, n):
    """``${repeat:96,3}`` -> ``[96, 96, 96]``."""
    return [value] * int(n)


def gat_stack(width, heads, n):
    """``${gat_stack:192,4,2}`` -> ``[[192, 4], [192, 4]]``."""
    return [[int(width), int(heads)] for _ in range(int(n))]


for _name, _fn in (("repeat", repeat), ("gat_stack", gat_stack)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
