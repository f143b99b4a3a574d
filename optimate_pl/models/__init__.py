"""The networks (OPTIMATE and the other backbones under its readout), their LightningModule and weight loading.

Names are imported when first used (as in :mod:`optimate_pl.data`): the configuration code reads which
backbone a config names without importing torch, so that a mistake on the command line is answered in a
second or two instead of after torch, PyG and Lightning have loaded.
"""
from importlib import import_module

_EXPORTS = {
    "make_network": "backbones", "SpectraModule": "module", "Optimate": "optimate", "count_parameters": "optimate",
    "GraphNetwork": "readout", "CheckpointError": "weights", "Weights": "weights", "build_network": "weights",
    "load_network_weights": "weights", "read_weights": "weights", "safe_load": "weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
