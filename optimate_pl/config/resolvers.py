"""OmegaConf resolvers used by the configs (registered on import of :mod:`optimate_pl`).

``repeat``/``gat_stack`` let a sweep search over scalars (width, depth, heads) that become the
list-valued architecture arguments of :class:`~optimate_pl.models.Optimate`; ``or_default`` names
folders after optional values; ``target_dim`` gives the network's output width from ``data.target``
(so the target is stated once).
"""
from __future__ import annotations

from omegaconf import OmegaConf


def repeat(value, n):
    """``${repeat:96,3}`` -> ``[96, 96, 96]``."""
    return [value] * int(n)


def gat_stack(width, heads, n):
    """``${gat_stack:192,4,2}`` -> ``[[192, 4], [192, 4]]``."""
    return [[int(width), int(heads)] for _ in range(int(n))]


def or_default(value, default):
    """``${or_default:${data.subset},full}`` -> ``full`` when ``data.subset`` is null (``oc.select`` only
    falls back for a missing key, not for a null one)."""
    return default if value is None else value


def target_dim(name):
    """``${target_dim:${data.target}}`` -> 2001 (``eps_imag``) or 1 (``sc_rpa_ipa``)."""
    from ..models.target_names import OUT_DIMS

    if str(name) not in OUT_DIMS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(OUT_DIMS)}")
    return OUT_DIMS[str(name)]


for _name, _fn in (("repeat", repeat), ("gat_stack", gat_stack), ("or_default", or_default),
                   ("target_dim", target_dim)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
