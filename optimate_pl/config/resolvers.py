"""OmegaConf resolvers used by the configs (registered on import of :mod:`optimate_pl`).

``repeat``/``gat_stack`` let a sweep search over scalars (width, depth, heads) that become the
list-valued architecture arguments of :class:`~optimate_pl.models.Optimate`; ``or_default`` names
folders after optional values; ``backbone_suffix`` keeps each backbone's sweep apart
and ``mf_variant`` MF's variants; ``target_dim`` gives
the network's output width from ``data.target`` (so the target is stated once); ``sweep_values`` turns a
study's axis (``study.subsets=null``, ``study.seeds=0``, ``study.models=[optimate,visnet]``) into the
sweeper's comma-separated choices.
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


def backbone_suffix(target):
    """``${backbone_suffix:${oc.select:model.net._target_,null}}`` -> ``""`` for the authors' network (no
    ``_target_``: the folder names of its sweeps stay as they were) and e.g. ``-dimenet`` for
    ``optimate_pl.models.dimenet.DimeNetCrystal`` (the class name, lower case, without ``Crystal``):
    ``sweep=tl model=dimenet`` must not continue OPTIMATE's Optuna study, whose trials would inform the
    sampler about another network."""
    from ..models.backbones import backbone_name

    name = backbone_name({"_target_": target} if target else None)
    return "" if name == "optimate" else f"-{name}"


def sweep_values(value) -> str:
    """``${sweep_values:${study.subsets}}``: a study axis as Hydra's sweeper takes it, a comma-separated string.

    The presets write an axis as such a string (``100,300,null``), but a user naming one value types
    ``study.subsets=null`` (the full training set) or ``study.seeds=0``, and YAML makes those a None and an int,
    which the sweeper's string-typed ``params`` reject with an OmegaConf validation error; a list
    (``study.models=[optimate,visnet]``) is taken as its items.
    """
    from omegaconf import ListConfig

    if value is None:
        return "null"
    if isinstance(value, (list, tuple, ListConfig)):
        return ",".join(sweep_values(v) for v in value)
    return str(value)


def mf_variant(strategy, init=None, repeat=1) -> str:
    """The suffix that keeps MF's variants apart from plain MF runs (folders, sweeps, report cells): ``-ipa`` for MF
    started from IPA weights (``strategy.init``, set by ``strategy=mf_ipa``), ``-r4`` for ``data.rpa_repeat=4``, both
    joined; ``""`` for plain MF and for every other strategy, so their folder names stay as they were."""
    if str(strategy) != "mf":
        return ""
    n = 1 if repeat is None else int(repeat)
    return ("-ipa" if init else "") + ("" if n == 1 else f"-r{n}")


def _mf_variant_of(*, _root_) -> str:
    """``${mf_variant:}``: :func:`mf_variant` of the config it is written in (its strategy and data nodes)."""
    return mf_variant(OmegaConf.select(_root_, "strategy.name"), OmegaConf.select(_root_, "strategy.init"),
                      OmegaConf.select(_root_, "data.rpa_repeat", default=1))


def target_dim(name):
    """``${target_dim:${data.target}}`` -> 2001 (``eps_imag``) or 1 (``sc_rpa_ipa``)."""
    from ..models.target_names import OUT_DIMS

    if str(name) not in OUT_DIMS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(OUT_DIMS)}")
    return OUT_DIMS[str(name)]


for _name, _fn in (("repeat", repeat), ("gat_stack", gat_stack), ("or_default", or_default),
                   ("backbone_suffix", backbone_suffix), ("target_dim", target_dim), ("sweep_values", sweep_values),
                   ("mf_variant", _mf_variant_of)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
