"""``python -m optimate_pl.studies <study> [--runs DIR] [--out DIR]``: see :mod:`optimate_pl.studies.report`."""
from .report import main

main()
