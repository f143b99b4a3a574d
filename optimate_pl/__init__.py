"""optimate_pl: OPTIMATE (Grunert, Großmann, Runge) as a PyTorch Lightning + Hydra framework."""
import warnings

# pymatgen warns for every noble-gas electronegativity lookup; it is harmless for us.
warnings.filterwarnings("ignore", message="No Pauling electronegativity")

__version__ = "0.1.0"

# The config resolvers: registered whenever the package (or its configs, optimate_pl.conf) is imported.
from .config import resolvers  # noqa: E402,F401


def load_model(path, **kwargs):
    """Load a trained model (Lightning checkpoint or published state_dict) in eval mode; see :mod:`optimate_pl.inference.predictor`."""
    from .inference.predictor import load_model as _load

    return _load(path, **kwargs)
