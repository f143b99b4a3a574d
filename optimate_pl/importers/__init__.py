"""Importers: optical spectra computed with VASP, Yambo or GPAW into the framework's database format.

``optimate-pl-import from=<code> input=<files> output=<folder>`` (:mod:`optimate_pl.cli.importer`) reads each
material with the code's reader (:mod:`.vasp`, :mod:`.yambo`, :mod:`.gpaw`), puts its spectra on the 0-20 eV
grid at the databases' broadening (:mod:`.material`) and writes the entries the compute command writes
(:mod:`.run`); ``data.source=files data.root=<folder>`` then trains on them.
"""
from .material import ImportedSpectra, ImportOptions, ImportRefused, to_entries
from .run import CODES, import_files

__all__ = ["CODES", "ImportOptions", "ImportRefused", "ImportedSpectra", "import_files", "to_entries"]
