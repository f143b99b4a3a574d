"""The command-line apps: ``optimate-pl`` (training), ``optimate-pl-predict``, ``optimate-pl-compute`` and
``optimate-pl-import``.

Each is a Hydra app with an early check that ends a configuration mistake in one line (exit code 2);
what they share is in :mod:`optimate_pl.cli.common`.
"""
from .compute import compute_main
from .importer import import_main
from .predict import predict_main
from .train import main

__all__ = ["main", "predict_main", "compute_main", "import_main"]
