"""SYNTHETIC IPA/RPA databases: deterministic stand-ins for the real figshare data.

Nothing here is physics. The structures are real pymatgen crystals built from common prototypes
(rocksalt, CsCl, zincblende, wurtzite, NiAs, fluorite/antifluorite, rutile, CdI2-type layers,
ReO3/anti-ReO3, perovskites, Heuslers, ordered zincblende, K2NiF4, double perovskites, elemental
and noble-gas solids) with charge-balanced main-group compositions, lattice constants from
tabulated radii and small seeded distortions. The spectra are a toy model on the real energy
grid: an IPA spectrum with a composition-dependent gap and element-specific broadened
oscillators scaled by density, and an RPA spectrum from it by a material-dependent "local-field"
damping and blue shift (stronger for electronegative, N/O/halogen-rich and loosely packed
materials). This keeps the learning problem's shape (RPA is a structured correction of IPA, so
pretraining on IPA helps) while every number stays clearly synthetic: ids start with ``syn``.

Sizes mirror the real databases: the authors' formula-grouped split gives exactly the requested
IPA split sizes (7742/944/1059 by default) and the RPA materials (4610/603/639, at most 8 sites,
1-8 sites present) are a subset of the IPA materials with the same split membership.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import reduce

import numpy as np
from pymatgen.core import Composition, Lattice, Structure

from ..spectra.grid import ENERGY_GRID
from .records import MaterialRecord
from .splits import formula_split

#: Bumped whenever generated data changes; part of every cache fingerprint.
GENERATOR_VERSION = "1"
IPA_SIZES = (7742, 944, 1059)
RPA_SIZES = (4610, 603, 639)
RPA_MAX_SITES = 8
# Share of formulas drawn per smallest-cell size (sites), mirroring the real RPA set's spread.
SITE_CLASS_WEIGHTS = {1: 0.01, 2: 0.03, 3: 0.07, 4: 0.25, 5: 0.16, 6: 0.12, 7: 0.14, 8: 0.22}
# Fractions of RPA training materials by number of sites in the real data (74/343/1470/2191/2699
# of 4610 have at most 2/3/4/5/6 sites); used to weight the RPA draw.
RPA_SITE_FRACTIONS = {1: 0.004, 2: 0.012, 3: 0.058, 4: 0.245, 5: 0.156, 6: 0.11, 7: 0.2, 8: 0.214}
NUM_VARIANTS = 3
MAX_NEAREST = 4.2  # Å, largest nearest-neighbour distance of any site before distortion
LFE_SCALE = 0.71  # tuned so that the median SC[IPA;RPA] is about 0.69, as in the real data

# Radii (Å) used to set lattice constants: anion-like for electronegative elements, van der
# Waals-like for noble gases, covalent for elemental solids; CATION_RADII override them for an
# element placed on a cation site (Shannon-like values).
RADII = {
    "H": 0.60, "He": 1.40, "Li": 0.90, "Be": 0.59, "B": 0.70, "C": 0.77, "N": 1.40, "O": 1.30,
    "F": 1.25, "Ne": 1.50, "Na": 1.16, "Mg": 0.86, "Al": 0.68, "Si": 1.11, "P": 1.60, "S": 1.70,
    "Cl": 1.67, "Ar": 1.80, "K": 1.52, "Ca": 1.14, "Ga": 0.76, "Ge": 1.20, "As": 1.75, "Se": 1.84,
    "Br": 1.82, "Kr": 1.90, "Rb": 1.66, "Sr": 1.32, "In": 0.94, "Sn": 1.39, "Sb": 1.90, "Te": 2.07,
    "I": 2.06, "Xe": 2.10,
}
CATION_RADII = {"H": 0.35, "Li": 0.90, "Na": 1.16, "K": 1.52, "Rb": 1.66, "Be": 0.59, "Mg": 0.86, "Ca": 1.14,
                "Sr": 1.32, "B": 0.41, "Al": 0.68, "Ga": 0.76, "In": 0.94, "C": 0.30, "Si": 0.54, "Ge": 0.73,
                "Sn": 0.83, "P": 0.52, "As": 0.72, "Sb": 0.90}
# Pauling electronegativities; noble gases get nominal values (pymatgen has none for He/Ne/Ar).
ELECTRONEGATIVITY = {
    "H": 2.20, "He": 4.50, "Li": 0.98, "Be": 1.57, "B": 2.04, "C": 2.55, "N": 3.04, "O": 3.44,
    "F": 3.98, "Ne": 4.40, "Na": 0.93, "Mg": 1.31, "Al": 1.61, "Si": 1.90, "P": 2.19, "S": 2.58,
    "Cl": 3.16, "Ar": 3.50, "K": 0.82, "Ca": 1.00, "Ga": 1.81, "Ge": 2.01, "As": 2.18, "Se": 2.55,
    "Br": 2.96, "Kr": 3.00, "Rb": 0.82, "Sr": 0.95, "In": 1.78, "Sn": 1.96, "Sb": 2.05, "Te": 2.10,
    "I": 2.66, "Xe": 2.60,
}
GROUP = {"H": 1, "He": 18, "Li": 1, "Be": 2, "B": 13, "C": 14, "N": 15, "O": 16, "F": 17, "Ne": 18,
         "Na": 1, "Mg": 2, "Al": 13, "Si": 14, "P": 15, "S": 16, "Cl": 17, "Ar": 18, "K": 1, "Ca": 2,
         "Ga": 13, "Ge": 14, "As": 15, "Se": 16, "Br": 17, "Kr": 18, "Rb": 1, "Sr": 2, "In": 13,
         "Sn": 14, "Sb": 15, "Te": 16, "I": 17, "Xe": 18}
ROW = {"H": 1, "He": 1, "Li": 2, "Be": 2, "B": 2, "C": 2, "N": 2, "O": 2, "F": 2, "Ne": 2,
       "Na": 3, "Mg": 3, "Al": 3, "Si": 3, "P": 3, "S": 3, "Cl": 3, "Ar": 3, "K": 4, "Ca": 4,
       "Ga": 4, "Ge": 4, "As": 4, "Se": 4, "Br": 4, "Kr": 4, "Rb": 5, "Sr": 5, "In": 5, "Sn": 5,
       "Sb": 5, "Te": 5, "I": 5, "Xe": 5}
CATION_STATES = {"H": (1,), "Li": (1,), "Na": (1,), "K": (1,), "Rb": (1,), "Be": (2,), "Mg": (2,),
                 "Ca": (2,), "Sr": (2,), "B": (3,), "Al": (3,), "Ga": (3,), "In": (3,), "Si": (4,),
                 "Ge": (2, 4), "Sn": (2, 4), "P": (5,), "As": (3, 5), "Sb": (3, 5), "C": (4,)}
ANION_STATES = {"N": (-3,), "P": (-3,), "As": (-3,), "Sb": (-3,), "O": (-2,), "S": (-2,), "Se": (-2,),
                "Te": (-2,), "F": (-1,), "Cl": (-1,), "Br": (-1,), "I": (-1,), "H": (-1,), "C": (-4,),
                "Si": (-4,)}
NOBLE = ("He", "Ne", "Ar", "Kr", "Xe")
COVALENT = ("C", "Si", "Ge", "Sn")


@dataclass(frozen=True)
class Prototype:
    """A structure type: lattice at unit scale, sites as (role, fractional coords), role kinds."""

    name: str
    matrix: tuple  # 3x3 lattice at unit scale
    sites: tuple  # ((role, (fx, fy, fz)), ...)
    kinds: tuple  # ((role, 'cation'|'anion'|'noble'|'covalent'), ...) in assignment order

    @property
    def nsites(self) -> int:
        return len(self.sites)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for role, _ in self.sites:
            out[role] = out.get(role, 0) + 1
        return out


def _fcc() -> tuple:
    return ((0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))


def _hex(c: float) -> tuple:
    return ((1, 0, 0), (-0.5, math.sqrt(3) / 2, 0), (0, 0, c))


def _cubic() -> tuple:
    return ((1, 0, 0), (0, 1, 0), (0, 0, 1))


def _cartesian_sites(matrix: tuple, cart: list[tuple[str, tuple]]) -> tuple:
    inv = np.linalg.inv(np.asarray(matrix, dtype=float))
    return tuple((r, tuple(float(v) % 1.0 for v in np.asarray(c, dtype=float) @ inv)) for r, c in cart)


def _k2nif4(mixed_anion: bool = False) -> Prototype:
    """K2NiF4 (7 sites); ``mixed_anion`` puts a second anion Y on the apical sites (A2BX2Y2)."""
    a, c = 1.0, 3.3
    apical = "Y" if mixed_anion else "X"
    m = ((-a / 2, a / 2, c / 2), (a / 2, -a / 2, c / 2), (a / 2, a / 2, -c / 2))
    cart = [("B", (0, 0, 0)), ("X", (a / 2, 0, 0)), ("X", (0, a / 2, 0)), (apical, (0, 0, 0.15 * c)),
            (apical, (0, 0, -0.15 * c)), ("A", (0, 0, 0.36 * c)), ("A", (0, 0, -0.36 * c))]
    kinds = (("A", "cation"), ("B", "cation"), ("X", "anion")) + ((("Y", "anion"),) if mixed_anion else ())
    return Prototype("mixed-anion-K2NiF4" if mixed_anion else "K2NiF4", m, _cartesian_sites(m, cart), kinds)


def _double_perovskite() -> Prototype:
    m = ((0, 1, 1), (1, 0, 1), (1, 1, 0))
    h = 0.5
    cart = [("B", (0, 0, 0)), ("C", (1, 0, 0)), ("X", (h, 0, 0)), ("X", (-h, 0, 0)), ("X", (0, h, 0)),
            ("X", (0, -h, 0)), ("X", (0, 0, h)), ("X", (0, 0, -h)), ("A", (h, h, h)), ("A", (-h, -h, -h))]
    return Prototype("double-perovskite", m, _cartesian_sites(m, cart),
                     (("A", "cation"), ("B", "cation"), ("C", "cation"), ("X", "anion")))


def _ordered_zincblende(mixed_anion: bool = False) -> Prototype:
    """Conventional zincblende cell (8 sites) with cation (ABX2) or anion (A2XY) ordering."""
    a, b, x, y = ("A", "A", "X", "Y") if mixed_anion else ("A", "B", "X", "X")
    cart = [("A", (0, 0, 0)), (b, (0, 0.5, 0.5)), (a, (0.5, 0, 0.5)), (b, (0.5, 0.5, 0)),
            (x, (0.25, 0.25, 0.25)), (y, (0.25, 0.75, 0.75)), (x, (0.75, 0.25, 0.75)), (y, (0.75, 0.75, 0.25))]
    kinds = (("A", "cation"), ("X", "anion"), ("Y", "anion")) if mixed_anion else \
        (("A", "cation"), ("B", "cation"), ("X", "anion"))
    return Prototype("anion-ordered-zincblende" if mixed_anion else "ordered-zincblende", _cubic(), tuple(cart), kinds)


AX = (("A", "cation"), ("X", "anion"))
PROTOTYPES: tuple[Prototype, ...] = (
    Prototype("fcc", _fcc(), (("E", (0, 0, 0)),), (("E", "noble"),)),
    Prototype("bcc", ((-0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.5, 0.5, -0.5)), (("E", (0, 0, 0)),), (("E", "noble"),)),
    Prototype("hcp", _hex(1.633), (("E", (1 / 3, 2 / 3, 0.25)), ("E", (2 / 3, 1 / 3, 0.75))), (("E", "noble"),)),
    Prototype("diamond", _fcc(), (("E", (0, 0, 0)), ("E", (0.25, 0.25, 0.25))), (("E", "covalent"),)),
    Prototype("lonsdaleite", _hex(1.633), (("E", (1 / 3, 2 / 3, 0)), ("E", (2 / 3, 1 / 3, 0.5)),
                                            ("E", (1 / 3, 2 / 3, 0.375)), ("E", (2 / 3, 1 / 3, 0.875))),
              (("E", "covalent"),)),
    Prototype("rocksalt", _fcc(), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), AX),
    Prototype("CsCl", _cubic(), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), AX),
    Prototype("zincblende", _fcc(), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))), AX),
    Prototype("wurtzite", _hex(1.633), (("A", (1 / 3, 2 / 3, 0)), ("A", (2 / 3, 1 / 3, 0.5)),
                                         ("X", (1 / 3, 2 / 3, 0.375)), ("X", (2 / 3, 1 / 3, 0.875))), AX),
    Prototype("NiAs", _hex(1.39), (("A", (0, 0, 0)), ("A", (0, 0, 0.5)),
                                    ("X", (1 / 3, 2 / 3, 0.25)), ("X", (2 / 3, 1 / 3, 0.75))), AX),
    Prototype("fluorite", _fcc(), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25)), ("X", (0.75, 0.75, 0.75))), AX),
    Prototype("antifluorite", _fcc(), (("X", (0, 0, 0)), ("A", (0.25, 0.25, 0.25)), ("A", (0.75, 0.75, 0.75))), AX),
    Prototype("CdI2", _hex(1.6), (("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25)), ("X", (2 / 3, 1 / 3, 0.75))), AX),
    Prototype("rutile", ((1, 0, 0), (0, 1, 0), (0, 0, 0.64)),
              (("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5)), ("X", (0.3, 0.3, 0)), ("X", (0.7, 0.7, 0)),
               ("X", (0.8, 0.2, 0.5)), ("X", (0.2, 0.8, 0.5))), AX),
    Prototype("ordered-rutile", ((1, 0, 0), (0, 1, 0), (0, 0, 0.64)),
              (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("X", (0.3, 0.3, 0)), ("X", (0.7, 0.7, 0)),
               ("X", (0.8, 0.2, 0.5)), ("X", (0.2, 0.8, 0.5))), (("A", "cation"), ("B", "cation"), ("X", "anion"))),
    Prototype("ReO3", _cubic(), (("A", (0, 0, 0)), ("X", (0.5, 0, 0)), ("X", (0, 0.5, 0)), ("X", (0, 0, 0.5))), AX),
    Prototype("anti-ReO3", _cubic(), (("X", (0, 0, 0)), ("A", (0.5, 0, 0)), ("A", (0, 0.5, 0)), ("A", (0, 0, 0.5))), AX),
    Prototype("perovskite", _cubic(), (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("X", (0.5, 0.5, 0)),
                                        ("X", (0.5, 0, 0.5)), ("X", (0, 0.5, 0.5))),
              (("A", "cation"), ("B", "cation"), ("X", "anion"))),
    Prototype("mixed-anion-perovskite", ((1, 0, 0), (0, 1, 0), (0, 0, 1.04)),
              (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("X", (0.5, 0.5, 0)), ("X", (0.5, 0, 0.5)),
               ("Y", (0, 0.5, 0.5))), (("A", "cation"), ("B", "cation"), ("X", "anion"), ("Y", "anion"))),
    Prototype("layered-ABX2", ((1, 0, 0), (-0.5, math.sqrt(3) / 2, 0), (0.5, math.sqrt(3) / 6, 1.65)),
              (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("X", (0.25, 0.25, 0.25)), ("X", (0.75, 0.75, 0.75))),
              (("A", "cation"), ("B", "cation"), ("X", "anion"))),
    Prototype("half-Heusler", _fcc(), (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("X", (0.25, 0.25, 0.25))),
              (("A", "cation"), ("B", "cation"), ("X", "anion"))),
    Prototype("Heusler", _fcc(), (("A", (0.25, 0.25, 0.25)), ("A", (0.75, 0.75, 0.75)), ("B", (0, 0, 0)),
                                   ("X", (0.5, 0.5, 0.5))), (("A", "cation"), ("B", "cation"), ("X", "anion"))),
    Prototype("mixed-anion-rutile", ((1, 0, 0), (0, 1, 0), (0, 0, 0.64)),
              (("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5)), ("X", (0.3, 0.3, 0)), ("X", (0.7, 0.7, 0)),
               ("Y", (0.8, 0.2, 0.5)), ("Y", (0.2, 0.8, 0.5))), (("A", "cation"), ("X", "anion"), ("Y", "anion"))),
    _ordered_zincblende(),
    _ordered_zincblende(mixed_anion=True),
    _k2nif4(),
    _k2nif4(mixed_anion=True),
    _double_perovskite(),
)


def _assignments(proto: Prototype):
    """Charge-balanced element assignments (role -> element) for a prototype, deterministic order."""
    roles = [r for r, _ in proto.kinds]
    kinds = dict(proto.kinds)
    counts = proto.counts()
    if kinds[roles[0]] == "noble":
        yield from ({"E": e} for e in NOBLE)
        return
    if kinds[roles[0]] == "covalent":
        yield from ({"E": e} for e in COVALENT)
        return
    pools = [CATION_STATES if kinds[r] == "cation" else ANION_STATES for r in roles]
    for elems in itertools.product(*(sorted(p) for p in pools)):
        if len(set(elems)) < len(elems):
            continue
        for states in itertools.product(*(p[e] for p, e in zip(pools, elems))):
            if sum(counts[r] * q for r, q in zip(roles, states)) == 0:
                yield dict(zip(roles, elems))
                break


def _formula_key(proto: Prototype, assign: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for role, n in proto.counts().items():
        counts[assign[role]] = counts.get(assign[role], 0) + n
    g = reduce(math.gcd, counts.values())
    return "".join(f"{e}{counts[e] // g}" for e in sorted(counts))


def candidate_formulas() -> dict[str, list[tuple[int, dict[str, str]]]]:
    """All charge-balanced (prototype index, assignment) pairs grouped by a formula key."""
    out: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for pi, proto in enumerate(PROTOTYPES):
        for assign in _assignments(proto):
            out.setdefault(_formula_key(proto, assign), []).append((pi, assign))
    return out


def build_structure(proto: Prototype, assign: dict[str, str], rng: np.random.Generator, variant: int) -> Structure:
    """Populate a prototype, scale it so the tightest pair touches at the sum of radii, distort it.

    ``variant`` 0 is the near-ideal polymorph (±1.5% strain); higher variants are increasingly
    distorted (±5% and ±9% strain, larger displacements), so a formula can have several
    polymorphs of one prototype.
    """
    species = [assign[r] for r, _ in proto.sites]
    coords = [c for _, c in proto.sites]
    kinds = dict(proto.kinds)
    unit = Structure(Lattice(proto.matrix), species, coords)
    centres, points, _, dists = unit.get_neighbor_list(2.0)
    radii = np.array([CATION_RADII[e] if kinds[r] == "cation" else RADII[e]
                      for e, (r, _) in zip(species, proto.sites)])
    scale = float(np.max((radii[centres] + radii[points]) / np.maximum(dists, 1e-6)))
    # Every site needs a neighbour well inside the 5 Å cutoff; squeeze cells where one would not.
    nearest = np.array([dists[centres == i].min() for i in range(len(species))])
    scale = min(scale, MAX_NEAREST / float(nearest.max()))
    strain_amp, disp_amp = ((0.015, 0.02), (0.05, 0.05), (0.09, 0.07))[variant]
    strain = rng.uniform(-strain_amp, strain_amp, size=(3, 3))
    strain = (strain + strain.T) / 2
    matrix = np.asarray(proto.matrix, dtype=float) * scale @ (np.eye(3) + strain)
    lattice = Lattice(matrix)
    cart = lattice.get_cartesian_coords(coords) + rng.normal(0.0, disp_amp, size=(len(coords), 3))
    return Structure(lattice, species, cart, coords_are_cartesian=True)


# --- the toy spectrum model -------------------------------------------------------------------

def _descriptors(structure: Structure) -> dict[str, float]:
    comp = structure.composition.fractional_composition
    els = [e.symbol for e in comp.elements]
    f = np.array([comp[e] for e in els])
    chi = np.array([ELECTRONEGATIVITY[e] for e in els])
    chi_mean = float(f @ chi)
    return {
        "els": els, "f": f,
        "ionicity": float(f @ np.abs(chi - chi_mean)),
        "row": float(f @ np.array([ROW[e] for e in els])),
        "vpa": structure.volume / len(structure),
        "neg_frac": float(sum(fi for fi, e in zip(f, els) if e in ("N", "O", "F", "Cl", "Br", "I"))),
        "noble": float(sum(fi for fi, e in zip(f, els) if e in NOBLE)),
    }


def _gauss(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def toy_spectra(structure: Structure) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(IPA spectrum, RPA spectrum, direct gap, indirect gap) of the SYNTHETIC toy model."""
    d = _descriptors(structure)
    w = ENERGY_GRID
    density = 12.0 / d["vpa"]
    gap = 0.7 + 2.6 * d["ionicity"] + 0.8 * max(0.0, 3.2 - d["row"]) + 6.5 * d["noble"] + 0.4 * (density - 0.6)
    gap = float(np.clip(gap, 0.6, 9.5))
    onset = 1.0 / (1.0 + np.exp(-(w - gap) / 0.12))
    ipa = np.zeros_like(w)
    for e, fe in zip(d["els"], d["f"]):
        gi = GROUP[e] - 1 if GROUP[e] <= 2 else GROUP[e] - 11
        centre = gap + 0.6 + 0.45 * gi + 0.5 * (5 - ROW[e]) * (1 + 0.3 * d["ionicity"])
        width = 0.35 + 0.12 * ROW[e] + 0.25 * d["ionicity"]
        amp = fe * (5.0 + 2.5 * ROW[e]) * density ** 0.8
        ipa += amp * _gauss(w, centre, width) + 0.35 * amp * _gauss(w, centre + 2.0 + 0.3 * gi, 1.4 * width)
    ipa += 1.5 * density * _gauss(w, gap + 5.5 + 2.0 * density, 2.2)
    ipa *= onset
    # Local-field effects: damp and blue-shift, more for electronegative/loosely packed materials.
    lfe = LFE_SCALE * float(np.clip(0.08 + 0.5 * d["neg_frac"] + 0.12 * d["ionicity"] + 0.03 * (d["vpa"] - 15.0) / 5.0, 0.03, 0.8))
    shift = 0.15 + 1.6 * lfe
    rpa = (1.0 - 0.75 * lfe) * np.interp(w - shift, w, ipa, left=0.0)
    rpa += 0.25 * lfe * float(ipa.max()) * _gauss(w, gap + 7.0, 2.5) * onset
    direct = gap + 0.1 * (1.0 + math.sin(3.0 * d["vpa"]))
    return ipa.astype(np.float32), rpa.astype(np.float32), float(direct), gap


# --- the database ------------------------------------------------------------------------------

@dataclass
class SyntheticDatabase:
    """The generated IPA and RPA records (RPA ids are a subset of IPA ids)."""

    ipa: list[MaterialRecord]
    rpa: list[MaterialRecord]
    seed: int


def _formula_counts(total_formulas: int) -> tuple[int, int, int]:
    c1, c2 = int(0.8 * total_formulas), int(0.9 * total_formulas)
    return c1, c2 - c1, total_formulas - c2


def _choose_formula_count(ipa_sizes: tuple[int, int, int]) -> int:
    n = int(sum(ipa_sizes) / 1.6)
    while n > 3 and any(c > s for c, s in zip(_formula_counts(n), ipa_sizes)):
        n -= 1
    if any(c == 0 for c in _formula_counts(n)):
        raise ValueError(f"IPA sizes {ipa_sizes} are too small to split by formula (need about 10+ per split)")
    return n


def generate(seed: int = 0, ipa_sizes: tuple[int, int, int] = IPA_SIZES,
             rpa_sizes: tuple[int, int, int] = RPA_SIZES, split_seed: int = 0) -> SyntheticDatabase:
    """Generate the SYNTHETIC databases deterministically from ``seed``.

    With the authors' formula split at ``split_seed`` the IPA records fall exactly into
    ``ipa_sizes`` (train, validation, test) and the RPA records into ``rpa_sizes``.
    """
    rng = np.random.default_rng(seed)
    candidates = candidate_formulas()
    keys = sorted(candidates)
    small = [k for k in keys if any(PROTOTYPES[p].nsites <= RPA_MAX_SITES for p, _ in candidates[k])]
    small_set = set(small)
    large = [k for k in keys if k not in small_set]
    n_formulas = _choose_formula_count(tuple(ipa_sizes))
    n_large = min(len(large), int(0.15 * n_formulas))
    if n_formulas - n_large > len(small):
        raise ValueError(f"cannot generate {n_formulas} distinct formulas (only {len(small) + len(large)} exist)")
    # Weight formulas by their smallest cell so that cell sizes spread roughly like the real RPA set.
    min_sites = np.array([min(PROTOTYPES[p].nsites for p, _ in candidates[k]) for k in small])
    weights = np.array([SITE_CLASS_WEIGHTS.get(int(n), 0.1) for n in min_sites])
    for n in np.unique(min_sites):
        weights[min_sites == n] /= np.sum(min_sites == n)
    chosen = list(rng.choice(small, n_formulas - n_large, replace=False, p=weights / weights.sum()))
    chosen += list(rng.choice(large, n_large, replace=False))
    # Polymorph options: each prototype of the formula, ideal and distorted.
    options = {k: [(p, a, v) for p, a in candidates[k] for v in range(NUM_VARIANTS)] for k in chosen}
    for k in chosen:
        order = rng.permutation(len(options[k]))
        # Prefer small cells first so that most polymorph-1 materials are RPA-eligible.
        options[k] = sorted((options[k][i] for i in order), key=lambda o: PROTOTYPES[o[0]].nsites > RPA_MAX_SITES)
    reduced = {k: Composition(k).reduced_formula for k in chosen}
    split_of = formula_split(chosen, [reduced[k] for k in chosen], seed=split_seed)
    n_polymorphs = {k: 1 for k in chosen}
    for split, target in zip(("train", "validation", "test"), ipa_sizes):
        members = [k for k in chosen if split_of[k] == split]
        extra = target - len(members)
        capacity = sum(len(options[k]) - 1 for k in members)
        if extra > capacity:
            raise ValueError(f"cannot reach {target} {split} materials with {len(members)} formulas")
        while extra > 0:
            open_ = [k for k in members if n_polymorphs[k] < len(options[k])]
            pick = rng.choice(open_, min(extra, len(open_)), replace=False)
            for k in pick:
                n_polymorphs[k] += 1
            extra -= len(pick)
    materials = [(k, options[k][j]) for k in chosen for j in range(n_polymorphs[k])]
    ids = rng.permutation(len(materials))
    ipa_records, split_members = [], {"train": [], "validation": [], "test": []}
    mat_seeds = rng.integers(0, 2**63, size=len(materials))
    for (k, (p, assign, variant)), num, mseed in zip(materials, ids, mat_seeds):
        proto = PROTOTYPES[p]
        structure = build_structure(proto, assign, np.random.default_rng(int(mseed)), variant)
        ipa, rpa, direct, indirect = toy_spectra(structure)
        rec = MaterialRecord(mat_id=f"syn{num:09d}", formula=reduced[k], structure=structure, spectrum=ipa,
                             direct_gap=direct, indirect_gap=indirect,
                             extra={"prototype": proto.name, "rpa": rpa, "synthetic": True})
        ipa_records.append(rec)
        split_members[split_of[k]].append(rec)
    rpa_records = []
    for split, target in zip(("train", "validation", "test"), rpa_sizes):
        eligible = [r for r in split_members[split] if r.nsites <= RPA_MAX_SITES]
        if target > len(eligible):
            raise ValueError(f"only {len(eligible)} {split} materials have <= {RPA_MAX_SITES} sites; asked for {target}")
        nsites = np.array([r.nsites for r in eligible])
        p = np.array([RPA_SITE_FRACTIONS[n] / np.sum(nsites == n) for n in nsites])
        for i in sorted(rng.choice(len(eligible), target, replace=False, p=p / p.sum())):
            r = eligible[i]
            # The IPA baseline of the RPA workflow is the IPA spectrum itself in this toy model.
            rpa_records.append(MaterialRecord(mat_id=r.mat_id, formula=r.formula, structure=r.structure,
                                              spectrum=r.extra["rpa"], ipa_spectrum=r.spectrum,
                                              direct_gap=r.direct_gap, indirect_gap=r.indirect_gap,
                                              extra={"prototype": r.extra["prototype"], "synthetic": True}))
    for r in ipa_records:
        r.extra.pop("rpa")
    ipa_records.sort(key=lambda r: r.mat_id)
    rpa_records.sort(key=lambda r: r.mat_id)
    return SyntheticDatabase(ipa=ipa_records, rpa=rpa_records, seed=seed)


def to_entry_dict(rec: MaterialRecord, kind: str) -> dict:
    """A record in the authors' real on-disk format (a ``ComputedStructureEntry`` dict).

    Used to write real-format fixture databases (tests, demos of the figshare reader).
    """
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    data = {"mat_id": rec.mat_id, "formula": rec.formula, "nsites": rec.nsites,
            "elements": sorted({e.symbol for e in rec.structure.composition.elements}),
            "ipa_direct_gap": rec.direct_gap, "ipa_indirect_gap": rec.indirect_gap}
    if kind == "ipa":
        data["ipa_epsI_0"] = rec.spectrum.tolist()
        data["ipa_epsR_0"] = np.zeros_like(rec.spectrum).tolist()
        params = {"ipa_broad": 0.3}
    else:
        data["rpa_epsI"] = {"xx": rec.spectrum.tolist()}
        data["ipa_epsI"] = {"xx": rec.ipa_spectrum.tolist()}
        data["rpa_similarity"] = 1.0
        params = {"rpa_broad": 0.3, "rpa_kppa": 1000, "rpa_G": {"xx": 100}}
    entry = ComputedStructureEntry(rec.structure, energy=0.0, parameters=params, data=data)
    return entry.as_dict()
