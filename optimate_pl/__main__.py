"""``python -m optimate_pl ...``: see :mod:`optimate_pl.cli`."""
from .cli import main

if __name__ == "__main__":
    main()
