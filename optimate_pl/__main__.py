"""``python -m optimate_pl ...``: see :mod:`optimate_pl.train`."""
from .train import main

if __name__ == "__main__":
    main()
