"""Which network a ``model.net`` config builds: OPTIMATE, or the backbone its ``_target_`` names.

``model.net`` holds a network's keyword arguments. Without ``_target_`` they are OPTIMATE's (the
authors' network, every published weight file); with it, any class that takes them, by its import
path: the three-body :class:`~optimate_pl.models.dimenet.DimeNetCrystal`, the equivariant
:class:`~optimate_pl.models.visnet.ViSNetCrystal`, or a user's own subclass of
:class:`~optimate_pl.models.readout.GraphNetwork`. The dict is saved in every checkpoint's
hyperparameters, so a weight file says which backbone it holds and loads without the user naming it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

#: The import path of the authors' network: what a ``net`` without ``_target_`` builds.
OPTIMATE = "optimate_pl.models.optimate.Optimate"


def backbone_of(net: dict[str, Any] | None) -> str:
    """The import path of the class a ``net`` dict builds."""
    return str((net or {}).get("_target_") or OPTIMATE)


def is_optimate(net: dict[str, Any] | None) -> bool:
    """Whether ``net`` builds the authors' network (whose published weight layouts we read)."""
    return backbone_of(net) == OPTIMATE


def backbone_name(net: dict[str, Any] | None) -> str:
    """A short name of the backbone: ``optimate``, or the class name in lower case without ``Crystal``
    (``DimeNetCrystal`` -> ``dimenet``): how reports and sweep folders tell backbones apart."""
    if is_optimate(net):
        return "optimate"
    return backbone_of(net).rsplit(".", 1)[-1].lower().removesuffix("crystal")


def make_network(net: dict[str, Any] | None) -> nn.Module:
    """The network of a ``model.net`` dict (``_target_``: a class path; none: :class:`Optimate`)."""
    import hydra.utils
    from torch import nn

    from .optimate import Optimate

    net = dict(net or {})
    target = net.pop("_target_", None)
    if not target or target == OPTIMATE:
        return Optimate(**net)
    try:
        cls = hydra.utils.get_class(target)
    except Exception as err:  # Hydra wraps the import error; say what to check
        raise ValueError(f"model.net._target_={target}: cannot import this backbone ({err}); give the import path "
                         f"of a network class, e.g. optimate_pl.models.dimenet.DimeNetCrystal") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"model.net._target_={target} is not a torch.nn.Module class")
    return cls(**net)


#: The keys of an OPTIMATE ``net`` that make its architecture (``dropout`` and ``norm`` do not change the
#: weights' shapes; a published file does not record them).
OPTIMATE_ARCHITECTURE_KEYS = ("node_widths", "gat_layers", "out_widths", "out_dim")


def architecture(net: dict[str, Any] | None) -> dict[str, Any]:
    """What two ``net`` dicts must share for one's weights to be the other's: OPTIMATE's widths, or for another
    backbone its class and every argument."""
    net = dict(net or {})
    if is_optimate(net):
        return {k: net.get(k) for k in OPTIMATE_ARCHITECTURE_KEYS}
    return {**net, "_target_": backbone_of(net)}
