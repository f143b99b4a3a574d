"""Data layer: raw files -> records -> graphs -> cached stores -> batches, served by DataModules."""
from .build import featurize_records
from .datamodule import IPADataModule, RPADataModule, SpectraDataModule
from .featurize import structure_to_graph
from .readers import read_ipa_database, read_rpa_database
from .records import ENERGY_GRID, MaterialRecord
from .store import GraphDataset, GraphStore

__all__ = ["IPADataModule", "RPADataModule", "SpectraDataModule", "featurize_records", "structure_to_graph",
           "read_ipa_database", "read_rpa_database", "ENERGY_GRID", "MaterialRecord", "GraphDataset", "GraphStore"]
