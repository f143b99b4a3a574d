"""Data layer: featurisation, real-format readers, the synthetic generator, splits, DataModules."""
from .datamodule import IPADataModule, RPADataModule, SpectraDataModule, featurize_records
from .featurize import structure_to_graph
from .readers import read_ipa_database, read_rpa_database
from .records import ENERGY_GRID, MaterialRecord
from .store import GraphDataset, GraphStore

__all__ = ["IPADataModule", "RPADataModule", "SpectraDataModule", "featurize_records", "structure_to_graph",
           "read_ipa_database", "read_rpa_database", "ENERGY_GRID", "MaterialRecord", "GraphDataset", "GraphStore"]
