"""``optimate-pl-compute``: the IPA and RPA rungs of structures with GPAW."""
from __future__ import annotations

import logging
import signal
import sys

import hydra
from omegaconf import DictConfig

from .common import USER_ERRORS, fail, precheck, quote_path_overrides


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="compute")
def _compute_app(cfg: DictConfig) -> None:
    from ..utils.atomic import DiskFullError, LockedError
    from ..dft.compute import Interrupted, compute, options_from_config
    from ..dft.runner import GPAWNotFound

    logging.getLogger("optimate_pl").setLevel(logging.INFO)
    try:
        opts, settings = options_from_config(cfg)
        summary = compute(opts, settings)
    except (*USER_ERRORS, GPAWNotFound, LockedError, DiskFullError) as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: one line, the shell's code for the signal
        print(stop.args[0] if isinstance(stop, Interrupted) else
              "interrupted before any material ran: run the same command to start again", file=sys.stderr)
        sys.exit(128 + (signal.SIGTERM if _TERMINATED else signal.SIGINT))
    run, folder = summary["this_run"], summary["folder"]
    print(f"computed {run['computed']} materials ({run['failed']} not computed) in {run['wall_s']:.0f} s; "
          f"{cfg.output} holds {folder['ipa_entries']} IPA and {folder['rpa_entries']} RPA entries"
          + (f"; not computed: {folder['not_computed']} (errors.csv)" if folder["not_computed"] else ""))


_TERMINATED = False


def _terminate(signum: int, frame) -> None:
    global _TERMINATED
    _TERMINATED = True
    raise KeyboardInterrupt


def compute_main() -> None:
    """Console entry point of the DFT rungs (``optimate-pl-compute``)."""
    # SIGTERM (`kill PID`, a scheduler's time limit) stops the command as Ctrl-C does: the workers at once, what
    # finished kept, their scratch removed. It is also the one way to stop a run started in the background by a script
    # (`nohup ... &`), which inherits SIGINT ignored; without this, the workers died with the command and left their
    # scratch files (the wave functions, up to a few hundred MB a material) behind.
    signal.signal(signal.SIGTERM, _terminate)
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("compute", sys.argv[1:])
    _compute_app()
