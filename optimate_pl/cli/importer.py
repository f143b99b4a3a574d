"""``optimate-pl-import``: optical spectra computed with VASP, Yambo or GPAW into the database format."""
from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from .common import USER_ERRORS, fail, precheck, quote_path_overrides


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="import")
def _import_app(cfg: DictConfig) -> None:
    from ..importers import ImportOptions, import_files
    from ..importers.run import ImportInputError

    logging.getLogger("optimate_pl").setLevel(logging.INFO)
    try:
        if cfg.beyond_grid not in ("refuse", "zero"):
            raise ValueError(f"beyond_grid={cfg.beyond_grid}: use refuse or zero")
        opts = ImportOptions(rung=str(cfg.rung), beyond_grid=str(cfg.beyond_grid),
                             broaden_to=None if cfg.broaden_to is None else float(cfg.broaden_to),
                             broadening_eV=None if cfg.broadening is None else float(cfg.broadening))
        summary = import_files(str(cfg["from"]), str(cfg.input), str(cfg.output), opts, structure=cfg.structure,
                               vasp_kind=str(cfg.vasp_kind), workers=cfg.workers, id_prefix=str(cfg.id_prefix or ""))
    except (*USER_ERRORS, ImportInputError) as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    print(f"imported {summary['imported']} of {summary['materials']} materials ({summary['ipa_entries']} IPA, "
          f"{summary['rpa_entries']} RPA entries) into {cfg.output} in {summary['wall_s']:.1f} s"
          + (f"; not imported: {summary['not_imported']} (reasons in {cfg.output}/errors.csv)"
             if summary["not_imported"] else ""))
    if summary["imported"]:
        # One rung only in the folder (VASP LOPTICS gives IPA alone): the other comes from the built-in ladder.
        folder = summary.get("folder") or summary
        one_rung = not folder["ipa_entries"] or not folder["rpa_entries"]
        print(f"train on them: python -m optimate_pl strategy=tl data.source=files data.root={cfg.output}"
              + (f" 'data.extra=[gpaw]'   (your spectra have no {'RPA' if folder['ipa_entries'] else 'IPA'} rung: "
                 f"the built-in ladder's gives it)" if one_rung else ""))


def import_main() -> None:
    """Console entry point of the importers (``optimate-pl-import``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("import", sys.argv[1:])
    _import_app()
