"""Network weights: the authors' three published layouts and our own checkpoints, architecture read from shapes.

The authors publish plain ``state_dict`` files in three layouts (paper's code and data release):

* IPA models (``eps_300.pt``): ``mlp_init_node.*``, ``gat1.*``, ``gat2.*``, ``mlp_att.*``, ``mlp1.*``;
* RPA TL models (``tl100.pt`` ... ``tl4610.pt``, ``tl2.pt`` ... ``tl6.pt``): the same keys under ``gatnn.``;
* RPA DL models (``dl100.pt`` ... ``dl4610.pt``, the SC model): torch_geometric ``Sequential``
  containers, ``gatnn.mlp_init_node.module_0.*``, ``gatnn.gat.module_<i>.*``, ``gatnn.mlp_att.module_0.*``,
  ``gatnn.mlp1.module_0.*``.

Our Lightning checkpoints hold :class:`~optimate_pl.models.Optimate` under ``model.``. All of them
are mapped onto :class:`Optimate`'s names (``gat.module_<i>`` -> ``gat<i+1>``), and the widths,
heads, number of GAT layers and output size are read from the tensor shapes, so no user ever has
to name the architecture of a file.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: What a canonical key starts with: the parts of :class:`Optimate`.
_CANONICAL = re.compile(r"^(mlp_init_node|gat\d+|mlp_att|mlp1)\.")
_CONTAINER = re.compile(r"^(mlp_init_node|mlp_att|mlp1)\.module_0\.")
_DL_GAT = re.compile(r"^gat\.module_(\d+)\.")
#: Prefixes a whole state_dict may sit under: ours (``model.``), the authors' LightningModule
#: (``gatnn.``), a DDP/DataParallel wrapper (``module.``).
_PREFIXES = ("model.", "gatnn.", "module.")
LAYOUTS_HELP = ("the authors' IPA layout (eps_*.pt: mlp_init_node.*, gat1.*, ...), their TL layout (tl*.pt: "
                "gatnn.mlp_init_node.*, ...), their DL layout (dl*.pt: gatnn.gat.module_0.*, ...) or an "
                "optimate_pl checkpoint")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unsafe, unreadable, non-finite, or of no known layout."""


@dataclass
class Weights:
    """A weight file read and mapped onto :class:`Optimate`.

    ``state_dict`` has Optimate's keys; ``net`` the Optimate keyword arguments (from the file's
    shapes, or from our checkpoint's hyperparameters); ``layout`` names what was found
    (``ipa``, ``tl``, ``dl`` or ``lightning``); ``hparams`` are our checkpoint's hyperparameters.
    """

    path: Path
    state_dict: dict[str, Tensor]
    net: dict[str, Any]
    layout: str
    hparams: dict[str, Any] = field(default_factory=dict)

    @property
    def out_dim(self) -> int:
        """Outputs per material: the saved ``out_dim``, else the network's default (a spectrum, 2001)."""
        import inspect

        from .optimate import Optimate

        return int(self.net.get("out_dim", inspect.signature(Optimate).parameters["out_dim"].default))


def safe_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only.

    A file that would run code when unpickled is refused with a clear message.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy or download?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects that would execute code on load "
            f"(only plain tensors/state_dicts are accepted; weights_only=True said: {str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    except Exception as err:  # a text or other file: torch's unpickler fails in many ways (KeyError, IndexError)
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch weight file "
                              f"({type(err).__name__}: {str(err)[:80]})") from None


def _strip(sd: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in sd.items()}


def canonical_state_dict(obj: Any, path: str | Path = "<state_dict>") -> tuple[dict[str, Tensor], str]:
    """Map any known layout onto Optimate's keys; returns ``(state_dict, layout)``.

    Raises :class:`CheckpointError` naming the file and the first keys that fit no layout.
    """
    layout = "ipa"
    sd = obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd, layout = obj["state_dict"], "lightning"
        # Our module keeps the network under ``model.``; anything else in it is not network weights.
        if any(k.startswith("model.") for k in sd):
            sd = {k: v for k, v in sd.items() if k.startswith("model.")}
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) for k in sd):
        raise CheckpointError(f"{path} is not a state_dict (a mapping of parameter names to tensors)")
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a state_dict: {bad[0]!r} is a {type(sd[bad[0]]).__name__}, not a tensor")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = _strip(sd, prefix)
            if prefix == "gatnn." and layout == "ipa":
                layout = "tl"
    mapped: dict[str, Tensor] = {}
    unfit = []
    for key, value in sd.items():
        new = _DL_GAT.sub(lambda m: f"gat{int(m.group(1)) + 1}.", _CONTAINER.sub(r"\1.", key))
        if new != key and layout in ("ipa", "tl"):
            layout = "dl"
        if not _CANONICAL.match(new):
            unfit.append(key)
        mapped[new] = value
    if unfit or not any(k.startswith("gat1.") for k in mapped):
        shown = ", ".join(unfit[:5]) if unfit else "no gat1/gat.module_0 weights"
        raise CheckpointError(f"{path} fits no known weight layout ({LAYOUTS_HELP}); first keys that do not fit: "
                              f"{shown}" + (f" (and {len(unfit) - 5} more)" if len(unfit) > 5 else ""))
    return mapped, layout


def _mlp(sd: dict[str, Tensor], part: str, path) -> tuple[int, list[int]]:
    """(input width, [widths of every layer]) of a torch_geometric ``MLP`` from its ``lins.<i>.weight``."""
    widths, i = [], 0
    while f"{part}.lins.{i}.weight" in sd:
        widths.append(int(sd[f"{part}.lins.{i}.weight"].shape[0]))
        i += 1
    if not widths:
        raise CheckpointError(f"{path}: no {part}.lins.0.weight, so the {part} widths cannot be read")
    return int(sd[f"{part}.lins.0.weight"].shape[1]), widths


def infer_architecture(sd: dict[str, Tensor], path: str | Path = "<state_dict>") -> dict[str, Any]:
    """Optimate's keyword arguments from the tensor shapes of a canonical state_dict.

    Node MLP widths from ``mlp_init_node.lins.<i>.weight``, ``[out, heads]`` of every GAT layer from
    ``gat<i>.att`` ([1, heads, out]), output widths and size from ``mlp1.lins.<i>.weight``, batch norm
    when the MLPs carry ``norms`` with running statistics.
    """
    node_in, node_widths = _mlp(sd, "mlp_init_node", path)
    gats, i = [], 1
    while f"gat{i}.att" in sd:
        att = sd[f"gat{i}.att"]
        if att.dim() != 3:
            raise CheckpointError(f"{path}: gat{i}.att has shape {tuple(att.shape)}, expected [1, heads, out]")
        gats.append([int(att.shape[2]), int(att.shape[1])])
        i += 1
    if not gats:
        raise CheckpointError(f"{path}: no GAT layer (gat1.att) found")
    _, out = _mlp(sd, "mlp1", path)
    norms = [k for k in sd if ".norms." in k]
    if norms and not any(k.endswith("running_mean") for k in norms):
        raise CheckpointError(f"{path}: the MLPs use a normalisation other than batch norm ({norms[0]})")
    edge = sd.get("gat1.lin_edge.weight")
    return {"node_widths": node_widths, "gat_layers": gats, "out_widths": out[:-1], "out_dim": out[-1],
            "norm": "batch_norm" if norms else None, "node_in": node_in,
            "edge_dim": int(edge.shape[1]) if edge is not None else 51}


def check_finite(sd: dict[str, Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or inf: a diverged run's checkpoint would predict garbage silently."""
    for key, t in sd.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"refusing to load {path}: {key} holds {n} non-finite values (NaN/inf); "
                                  f"the run that wrote it diverged")


#: The multi-fidelity embedding of a ``strategy=mf`` checkpoint (beside ``model.*``) and the row of the RPA rung.
FIDELITY_KEY, RPA_FIDELITY = "fidelity.weight", 1


def fold_fidelity(obj: Any, sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """A ``strategy=mf`` checkpoint's network for the RPA rung: ``mlp1(z + e_rpa)`` is ``mlp1(z)`` with
    ``W0 @ e_rpa`` added to the first layer's bias, so the embedding folds into ``mlp1.lins.0.bias`` exactly."""
    full = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(full, dict) or FIDELITY_KEY not in full:
        return sd
    e = full[FIDELITY_KEY][RPA_FIDELITY]
    out = dict(sd)
    out["mlp1.lins.0.bias"] = sd["mlp1.lins.0.bias"] + sd["mlp1.lins.0.weight"] @ e
    return out


def _other_backbone(obj: Any, path: Path) -> Weights | None:
    """Our checkpoint of a backbone other than OPTIMATE (``hyper_parameters.net._target_``), or ``None``.

    Its network's keys are its own (no published layout to map); the saved ``net`` names the class."""
    from .backbones import is_optimate

    if not (isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)):
        return None
    hparams = dict(obj.get("hyper_parameters") or {})
    net = hparams.get("net")
    if not isinstance(net, dict) or is_optimate(net):
        return None
    sd = {k[len("model."):]: v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if not sd or bad:
        raise CheckpointError(f"{path} names the backbone {net['_target_']} but holds no network weights "
                              f"(model.*) as tensors")
    check_finite(sd, path)
    return Weights(path=path, state_dict=fold_fidelity(obj, sd), net=dict(net), layout="lightning", hparams=hparams)


def read_weights(path: str | Path) -> Weights:
    """Read any supported weight file (see the module docstring) safely, mapped and with its architecture.

    A checkpoint of another backbone (``model=dimenet``, ``visnet``, a user's) is read with the ``net``
    it saved, whose ``_target_`` names the class (:func:`~optimate_pl.models.backbones.make_network`)."""
    path = Path(path).expanduser()
    obj = safe_load(path)
    other = _other_backbone(obj, path)
    if other is not None:
        return other
    sd, layout = canonical_state_dict(obj, path)
    check_finite(sd, path)
    sd = fold_fidelity(obj, sd)
    hparams = dict(obj.get("hyper_parameters") or {}) if layout == "lightning" else {}
    inferred = infer_architecture(sd, path)
    net = dict(hparams["net"]) if isinstance(hparams.get("net"), dict) else inferred
    return Weights(path=path, state_dict=sd, net=net, layout=layout, hparams=hparams)


def load_network_weights(model: nn.Module, weights: Weights | str | Path) -> nn.Module:
    """Load weights (any layout) into ``model``; any mismatch is an error listing the keys and shapes."""
    w = weights if isinstance(weights, Weights) else read_weights(weights)
    own = model.state_dict()
    problems = []
    for k in sorted(set(own) | set(w.state_dict)):
        if k not in w.state_dict:
            problems.append(f"  missing in checkpoint: {k} {tuple(own[k].shape)}")
        elif k not in own:
            problems.append(f"  unexpected in checkpoint: {k} {tuple(w.state_dict[k].shape)}")
        elif own[k].shape != w.state_dict[k].shape:
            problems.append(f"  shape mismatch: {k} checkpoint {tuple(w.state_dict[k].shape)} vs model "
                            f"{tuple(own[k].shape)}")
    if problems:
        shown = problems[:20] + ([f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CheckpointError(f"checkpoint {w.path} does not fit the configured architecture:\n" + "\n".join(shown))
    model.load_state_dict(w.state_dict)
    return model


def build_network(weights: Weights | str | Path) -> nn.Module:
    """The network of the file's own backbone and architecture with its weights, in eval mode."""
    from .backbones import make_network

    w = weights if isinstance(weights, Weights) else read_weights(weights)
    return load_network_weights(make_network(w.net), w).eval()
