"""``optimate-pl-predict``: spectra (and derived optics) for structures from a trained model."""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .common import USER_ERRORS, configure_process, fail, fail_if_disk_full, precheck, quote_path_overrides


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="predict")
def _predict_app(cfg: DictConfig) -> None:
    from ..inference.screening import PredictSettings, run_prediction

    configure_process(cfg)
    try:
        result = run_prediction(cfg.checkpoint, cfg.input, cfg.output, PredictSettings.from_config(cfg))
    except USER_ERRORS as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    except Exception as err:  # a full disk: one line (anything else keeps its traceback)
        fail_if_disk_full(err, cfg.output, bool(cfg.get("verbose_errors")))
        return
    if not result:  # not rank 0 of a multi-device run
        return
    print(f"predicted {result['n_predicted']} of {result['n_inputs']} materials -> {cfg.output}"
          + (f"; {result['n_skipped']} skipped, reasons in errors.csv" if result["n_skipped"] else ""))
    incomplete = result.get("incomplete_inputs") or {}
    for detail in incomplete.values():
        print(f"not everything was read: {detail}", file=sys.stderr)
    if result["n_predicted"] == 0:
        sys.exit(1)
    if incomplete:  # what was read is written, but the input was not read to its end
        print(f"once the file is whole again, predict it anew: the same command with resume=false (or another "
              f"output=)", file=sys.stderr)
        sys.exit(3)


def predict_main() -> None:
    """Console entry point of prediction (``optimate-pl-predict``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("predict", sys.argv[1:])
    _predict_app()


