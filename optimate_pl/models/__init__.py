"""The networks (OPTIMATE and the other backbones under its readout), their LightningModule and weight loading."""
from .backbones import make_network
from .module import SpectraModule
from .optimate import Optimate, count_parameters
from .readout import GraphNetwork
from .weights import CheckpointError, Weights, build_network, load_network_weights, read_weights, safe_load

__all__ = ["Optimate", "GraphNetwork", "SpectraModule", "count_parameters", "make_network", "CheckpointError",
           "Weights", "build_network", "load_network_weights", "read_weights", "safe_load"]
