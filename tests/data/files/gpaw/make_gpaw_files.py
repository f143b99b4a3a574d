"""How the GPAW files in this folder were made (run once, with Debian's GPAW 22.8: /usr/bin/python3 make_gpaw_files.py).

GPAW writes each CSV itself (``DielectricFunction.get_dielectric_function(direction=..., filename=...)``); the
structures are written by ASE from the same Atoms. Small settings (PW 250 eV, 6x6x6 / 8x8x8 k-points,
response cutoff 20 eV, eta 0.2 eV = GPAW's default): real GPAW output, not converged physics.
* Si/: diamond Si (cubic), one direction: df.csv + Si.cif.
* AlN/: wurtzite AlN (hexagonal, 4 atoms), three directions: df_x.csv, df_y.csv, df_z.csv + POSCAR.
"""
import os
import sys

from ase.build import bulk
from ase.io import write
from gpaw import GPAW, PW
from gpaw.response.df import DielectricFunction


def run(atoms, folder, kgs, knscf, directions, structure_name):
    os.makedirs(folder, exist_ok=True)
    calc = GPAW(mode=PW(250), xc="PBE", kpts={"size": kgs, "gamma": True}, occupations={"name": "fixed-uniform"},
                txt=os.path.join(folder, "gpaw.txt"))
    atoms.calc = calc
    atoms.get_potential_energy()
    nocc = calc.get_number_of_electrons() // 2
    nscf = calc.fixed_density(nbands=int(nocc) + 24, kpts={"size": knscf, "gamma": True},
                              convergence={"bands": int(nocc) + 20}, txt=os.path.join(folder, "gpaw.txt"))
    gpw = os.path.join(folder, "nscf.gpw")
    nscf.write(gpw, "all")
    df = DielectricFunction(gpw, frequencies={"type": "nonlinear", "domega0": 0.05, "omega2": 10.0, "omegamax": 25.0},
                            eta=0.2, ecut=20, nbands=int(nocc) + 20, intraband=False, hilbert=True,
                            txt=os.path.join(folder, "df.txt"))
    for d in directions:
        name = "df.csv" if len(directions) == 1 else f"df_{d}.csv"
        df.get_dielectric_function(direction=d, filename=os.path.join(folder, name))
    write(os.path.join(folder, structure_name), atoms, format="cif" if structure_name.endswith(".cif") else "vasp")
    for junk in ("nscf.gpw", "gpaw.txt", "df.txt"):
        os.remove(os.path.join(folder, junk))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    which = sys.argv[1:] or ["Si", "AlN"]
    if "Si" in which:
        run(bulk("Si", "diamond", a=5.43), os.path.join(here, "Si"), (4, 4, 4), (8, 8, 8), "x", "Si.cif")
    if "AlN" in which:
        run(bulk("AlN", "wurtzite", a=3.11, c=4.98), os.path.join(here, "AlN"), (4, 4, 3), (6, 6, 4), "xyz", "POSCAR")
