import math
from collections import Counter

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from optimate_pl.data.featurize import gaussian_expand, structure_to_graph

from ..conftest import NACL_A as A  # rocksalt NaCl lattice constant (Å)


def test_nacl_neighbour_shells_match_the_lattice(rocksalt_nacl):
    g = structure_to_graph(rocksalt_nacl(), mat_id="nacl")
    # Within 5 Å of any ion in rocksalt: 6 at a/2, 12 at a/sqrt2, 8 at a*sqrt3/2; a = 5.64 Å is beyond.
    shells = {A / 2: 6, A / math.sqrt(2): 12, A * math.sqrt(3) / 2: 8}
    assert g.edge_index.shape == (2, 2 * sum(shells.values()))
    for atom in (0, 1):
        d = g.dist[g.edge_index[0] == atom].numpy()
        counts = Counter(np.round(d.astype(np.float64), 3).tolist())
        assert counts == {round(k, 3): v for k, v in shells.items()}
    # First shell connects Na to Cl only; the second shell connects like ions.
    first = g.dist < 3.0
    assert torch.all(g.edge_index[0, first] != g.edge_index[1, first])
    second = (g.dist > 3.5) & (g.dist < 4.5)
    assert torch.all(g.edge_index[0, second] == g.edge_index[1, second])  # periodic images: multigraph


def test_node_features_one_hot_group_and_period(rocksalt_nacl):
    g = structure_to_graph(rocksalt_nacl())
    assert g.x.shape == (2, 13)
    na = np.zeros(13); na[0] = 1; na[8 + 2] = 1   # group 1, period 3
    cl = np.zeros(13); cl[6] = 1; cl[8 + 2] = 1   # group 17 -> index 17 - 11 = 6, period 3
    np.testing.assert_array_equal(g.x.numpy(), np.stack([na, cl]))


def test_edge_features_are_the_gaussian_expansion(rocksalt_nacl):
    g = structure_to_graph(rocksalt_nacl())
    d = float(g.dist[0])
    mu = np.linspace(0, 5, 51)
    expected = np.sqrt(10 / np.pi) * np.exp(-10 * (d - mu) ** 2)
    np.testing.assert_allclose(g.edge_attr[0].numpy(), expected, rtol=1e-5, atol=1e-7)
    assert g.edge_attr.shape == (g.edge_index.shape[1], 51)
    # At d = 2.82 the closest centre is 2.8: the 29th Gaussian (index 28) is the largest.
    assert int(gaussian_expand(torch.tensor([2.82])).argmax()) == 28


def test_unsupported_element_names_element_and_material():
    s = Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"unsupported element Fe in material agm-iron"):
        structure_to_graph(s, mat_id="agm-iron")
    s6 = Structure(Lattice.cubic(5.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # Cs is period 6
    with pytest.raises(ValueError, match="Cs"):
        structure_to_graph(s6, mat_id="x")


def test_isolated_atom_has_no_edges_and_empty_structure_is_an_error():
    lonely = Structure(Lattice.cubic(6.0), ["Ar"], [[0, 0, 0]])  # nearest image 6 Å away
    g = structure_to_graph(lonely, mat_id="ar-gas")
    assert g.x.shape == (1, 13) and g.edge_index.shape == (2, 0) and g.edge_attr.shape == (0, 51)
    with pytest.raises(ValueError, match="no sites"):
        structure_to_graph(Structure(Lattice.cubic(3.0), [], []), mat_id="empty")


def _reference_edges(s, cutoff=5.0):
    """get_all_neighbors' multigraph as (centre, neighbour, distance) rows, sorted."""
    rows = sorted((i, nb.index, nb.nn_distance) for i, nbs in enumerate(s.get_all_neighbors(cutoff)) for nb in nbs)
    return np.array(rows, dtype=float).reshape(-1, 3)


def _parity_structures():
    from optimate_pl.data import synthetic

    rng = np.random.default_rng(7)
    structs = [r.structure for r in synthetic.generate(0, (200, 40, 40), (100, 20, 20)).ipa[:220]]
    for k in range(100):  # tiny and skewed cells: hundreds of periodic images within 5 Å
        m = np.eye(3) * rng.uniform(1.8, 3.0) + rng.normal(0, 0.3, (3, 3))
        m[1] += m[0] * rng.uniform(0.5, 0.95)
        structs.append(Structure(Lattice(m), ["Si", "O"][: 1 + k % 2], rng.random((1 + k % 2, 3))))
    structs.append(Structure(Lattice.cubic(5.0), ["Ar"], [[0, 0, 0]]))  # neighbours at exactly the cutoff
    return structs


@pytest.mark.parametrize("backend", ["matscipy", "pymatgen"])
def test_fast_neighbour_list_is_exactly_get_all_neighbors(backend, monkeypatch):
    """The same edges as a multiset and the same distances (1e-5) as pymatgen's get_all_neighbors(5)."""
    import builtins

    from optimate_pl.data.featurize import neighbour_list

    if backend == "pymatgen":  # the fallback when matscipy is not installed
        real_import = builtins.__import__

        def no_matscipy(name, *args, **kwargs):
            if name.startswith("matscipy"):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_matscipy)
    structs = _parity_structures()
    n_edges = 0
    for s in structs:
        ref = _reference_edges(s)
        edge_index, dist = neighbour_list(s, 5.0)
        ours = np.array(sorted(zip(edge_index[0], edge_index[1], dist.astype(float))), dtype=float).reshape(-1, 3)
        assert ours.shape == ref.shape, s.composition
        np.testing.assert_array_equal(ours[:, :2], ref[:, :2])
        np.testing.assert_allclose(ours[:, 2], ref[:, 2], atol=1e-5, rtol=0)
        n_edges += len(ref)
    assert len(structs) == 321 and n_edges > 40_000
    assert len(neighbour_list(structs[-1], 5.0)[1]) == 6  # a neighbour at exactly 5 Å counts, as in pymatgen


def test_new_structures_are_checked_before_prediction():
    from optimate_pl.data.featurize import StructureError, graph_arrays

    overlap = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    with pytest.raises(StructureError, match="0.200 Å apart, closer than 0.5 Å") as err:
        graph_arrays(overlap, 5.0, "x", min_distance=0.5)
    assert err.value.reason == "atoms_too_close"
    gas = Structure(Lattice.cubic(9.0), ["Ar"], [[0, 0, 0]])
    with pytest.raises(StructureError, match="no atom has a neighbour within 5.0 Å") as err:
        graph_arrays(gas, 5.0, "gas", require_edges=True)
    assert err.value.reason == "no_neighbours"
    assert graph_arrays(gas, 5.0)[1].shape == (2, 0)  # the authors' training data keeps such a graph
    flat = Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Si"], [[0, 0, 0]])
    with pytest.raises(StructureError) as err:
        graph_arrays(flat, 5.0, "flat")
    assert err.value.reason == "invalid_lattice"
