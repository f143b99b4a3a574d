"""The OPTIMATE network, its LightningModule and weight loading."""
from .module import SpectraModule
from .optimate import Optimate, count_parameters
from .weights import CheckpointError, Weights, build_network, load_network_weights, read_weights, safe_load

__all__ = ["Optimate", "SpectraModule", "count_parameters", "CheckpointError", "Weights", "build_network",
           "load_network_weights", "read_weights", "safe_load"]
