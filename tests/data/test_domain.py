"""The training domain a model card records, and what lies outside it (elements, sites, volume per site)."""
from __future__ import annotations

import pytest

from optimate_pl.data.domain import outside, training_domain

DOMAIN = training_domain(["NaCl", "MgO", "Mg2SiO4", "GaAs"], [2, 2, 7, 2], [22.4, 9.4, 10.2, 22.7])


def test_the_domain_of_a_training_set():
    assert DOMAIN == {"elements": ["As", "Cl", "Ga", "Mg", "Na", "O", "Si"], "sites": [2, 7],
                      "volume_per_site": [9.4, 22.7]}
    assert training_domain(["NaCl"], [2])["volume_per_site"] is None  # a store without volumes


@pytest.mark.parametrize("formula, sites, volume, said", [
    ("NaCl", 2, 22.0, ""),
    ("MgO", 4, 9.0, ""),                                   # 9.0 is within 10 % of the smallest, 9.4
    ("SnO2", 6, 11.0, "element never in training: Sn"),
    ("KBr", 2, 30.0, "elements never in training: Br, K; 30.0 Å³ per site (training: 9.4-22.7)"),
    ("NaCl", 8, 22.0, "8 sites (training cells: 2-7)"),
    ("MgO", 2, 5.0, "5.0 Å³ per site (training: 9.4-22.7)"),
    ("NaCl", 2, float("nan"), ""),                         # volume unknown: not judged on it
])
def test_what_lies_outside(formula, sites, volume, said):
    assert outside(DOMAIN, formula, sites, volume) == said


def test_no_domain_recorded_flags_nothing():
    assert outside(None, "SnO2", 60, 99.0) == "" and outside({}, "SnO2", 60) == ""


def test_the_data_module_records_its_training_domain(tiny_rpa):
    from optimate_pl.data.domain import elements_of

    domain = tiny_rpa.describe()["domain"]
    rows = tiny_rpa.train_set.rows.tolist()
    nsites = tiny_rpa.store.nsites[rows]
    assert domain["sites"] == [int(nsites.min()), int(nsites.max())]
    assert set(domain["elements"]) == {e for i in rows for e in elements_of(tiny_rpa.store.formula[i])}
    low, high = domain["volume_per_site"]
    assert 0 < low < high and tiny_rpa.store.volume is not None
