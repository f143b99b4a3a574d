"""The packaged config groups (``optimate_pl.conf``), read outside Hydra's composition."""
from __future__ import annotations

from importlib import resources

from omegaconf import DictConfig, OmegaConf

from .schema import ConfigError

STRATEGIES = ("ipa", "dl", "tl", "sc", "mf")
#: The training-set sizes the paper tuned a DL architecture for.
DL_SIZES = (100, 300, 1000, 3000, 4610)


def load_group_config(group: str, name: str) -> DictConfig:
    """A YAML of the packaged config folder, e.g. ``("model", "dl_300")``."""
    path = resources.files("optimate_pl.conf").joinpath(group, f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(f"no config {group}/{name}.yaml")
    return OmegaConf.create(path.read_text())


def load_train_config() -> DictConfig:
    """The packaged ``train.yaml`` as written (defaults list unresolved), for its plain settings."""
    return OmegaConf.create(resources.files("optimate_pl.conf").joinpath("train.yaml").read_text())


def dl_architecture_for(subset: int | None) -> str:
    """The DL model config tuned for the published training-set size nearest to ``subset``."""
    n = DL_SIZES[-1] if subset is None else int(subset)
    return f"dl_{min(DL_SIZES, key=lambda s: abs(s - n))}"


def model_net(name: str, target: str = "eps_imag") -> dict:
    """The network arguments (``model.net``) of the packaged model config ``name`` for ``target``, resolved
    (their output width follows ``data.target``)."""
    from . import resolvers  # noqa: F401  (the target_dim resolver)

    data = {"cutoff": load_group_config("data", "ipa").cutoff, "target": target}  # what a backbone's net reads
    cfg = OmegaConf.create({"data": data, "model": load_group_config("model", name)})
    return OmegaConf.to_container(cfg.model.net, resolve=True)
