"""The photon-energy grid of every spectrum: 0-20 eV in 10 meV steps (docs/domain.md §1)."""
import numpy as np

NUM_POINTS = 2001
ENERGY_GRID = np.linspace(0.0, 20.0, NUM_POINTS)
