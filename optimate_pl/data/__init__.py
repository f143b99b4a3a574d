"""Data layer: raw files -> records -> graphs -> cached stores -> batches, served by DataModules.

Names are imported when first used, so that a module of the layer (e.g. ``featurize`` in a
featurisation worker) does not pull in Lightning.
"""
from importlib import import_module

_EXPORTS = {
    "IPADataModule": "datamodule", "RPADataModule": "datamodule", "SpectraDataModule": "datamodule",
    "MultiFidelityDataModule": "multifidelity",
    "featurize_records": "build", "structure_to_graph": "featurize", "read_ipa_database": "readers",
    "read_rpa_database": "readers", "ENERGY_GRID": "records", "MaterialRecord": "records",
    "GraphDataset": "store", "GraphStore": "store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
