"""The short summary table printed at the end of a run."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table


def print_summary(cfg: DictConfig, metrics: dict[str, Any], n_test: int) -> None:
    """Test medians of the run (and the IPA baseline for RPA data) as a table."""
    source = "SYNTHETIC" if cfg.data.source == "synthetic" else "figshare"
    title = (f"{cfg.strategy.name.upper()} on {source} {'IPA' if 'IPA' in cfg.data._target_ else 'RPA'} data, "
             f"train subset {cfg.data.subset or 'full'}" + (f", max_sites {cfg.data.max_sites}" if cfg.data.max_sites else "")
             + f" — test set of {n_test}")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("model", justify="right")
    table.add_column("IPA baseline", justify="right")
    rows = [("median SC", "test/sc_median", "test/ipa_sc_median"), ("median MSE", "test/mse_median", "test/ipa_mse_median"),
            ("median MAE", "test/mae_median", None), ("mean SC", "test/sc_mean", None),
            ("median |ΔSC|", "test/ae_median", None), ("mean |ΔSC|", "test/ae_mean", None)]
    for label, key, base in rows:
        if key in metrics:
            table.add_row(label, f"{metrics[key]:.4f}", f"{metrics[base]:.4f}" if base and base in metrics else "")
    Console().print(table)
