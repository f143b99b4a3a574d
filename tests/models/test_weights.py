"""Every published weight layout loads through the public API, architecture read from the file."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import optimate_pl
from optimate_pl.models import CheckpointError, read_weights
from optimate_pl.inference.screening import load_predictions, run_prediction

from .authors_reference import ARCHITECTURES, authors_network, crystals, reference_batch, reference_graph

#: (architecture, layout) as the authors publish them: eps_300.pt, tl*.pt, dl*.pt, and the SC model
#: (trained as a DL-layout network with the IPA architecture and one output).
PUBLISHED = [("ipa", "ipa"), ("ipa", "tl"), ("sc", "dl"), ("dl_100", "dl"), ("dl_300", "dl"), ("dl_1000", "dl"),
             ("dl_3000", "dl"), ("dl_4610", "dl")]


def save_published(tmp_path, name, layout):
    net = authors_network(name, layout, seed=3)
    path = tmp_path / f"{layout}_{name}.pt"
    torch.save(net.state_dict(), path)
    return net, path


@pytest.mark.parametrize("name,layout", PUBLISHED)
def test_published_layout_loads_and_predicts_like_the_authors_network(tmp_path, name, layout):
    net, path = save_published(tmp_path, name, layout)
    w = read_weights(path)
    node, gats, out, out_dim = ARCHITECTURES[name]
    assert (w.layout, w.net["node_widths"], w.net["gat_layers"], w.net["out_widths"], w.net["out_dim"]) == \
        (layout, node, gats, out, out_dim)
    model = optimate_pl.load_model(path)
    assert model.is_sc_model == (out_dim == 1)
    with torch.no_grad():
        expected = net(reference_batch()).numpy()
    got = model.predict_graphs([reference_graph(s) for s in crystals()])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_weights_of_no_known_layout_name_the_file_and_keys(tmp_path):
    path = tmp_path / "other_model.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3), "head.bias": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=r"other_model.pt fits no known weight layout.*encoder.weight, head.bias"):
        optimate_pl.load_model(path)
    torch.save({"weights": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match="not a state_dict"):
        read_weights(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="is empty"):
        read_weights(path)
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_weights(path)
    # Text given as strategy.checkpoint (a config, a note): torch's unpickler failed with KeyError / IndexError.
    for text in ("hello\n", "strategy: tl\nlr: 1e-3\n", "\x80\x02}q\x00."):
        path.write_text(text, encoding="latin-1")
        with pytest.raises(CheckpointError, match="other_model.pt"):
            read_weights(path)


def test_non_finite_weights_are_refused_for_prediction_and_tl(tmp_path, cli):
    net, path = save_published(tmp_path, "ipa", "ipa")
    sd = net.state_dict()
    sd["gat2.att"][0, 1, 3] = float("nan")
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"gat2.att holds 1 non-finite values"):
        optimate_pl.load_model(path)

    r = cli("strategy=tl", f"strategy.checkpoint={path}", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2 and "non-finite" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name,layout", [("ipa", "ipa"), ("dl_300", "dl")])
def test_tl_starts_from_any_published_layout(tmp_path, cache_dir, name, layout, cfg_train):
    """With no training epoch, the test metrics are those of the published network itself."""
    from optimate_pl.spectra.metrics import similarity_coefficient
    from optimate_pl.training.stages import run


    net, path = save_published(tmp_path, name, layout)
    metrics = run(cfg_train(tmp_path, "strategy=tl", f"strategy.checkpoint={path}", "trainer.max_epochs=0"))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test/sc_median"] == pytest.approx(metrics["test/sc_median"])
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"out_widths:\n    - {ARCHITECTURES[name][2][0]}" in config  # the run's network is the file's
    rows = pd.read_csv(tmp_path / "run" / "test_results.csv")
    from optimate_pl.data import RPADataModule

    from ..conftest import TINY_SIZES

    dm = RPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES)
    dm.setup()
    batch = dm.test_set.collate(range(len(dm.test_set)))
    with torch.no_grad():
        expected = similarity_coefficient(net(batch), batch.y).numpy()
    np.testing.assert_allclose(rows.set_index("mat_id").loc[dm.test_set.mat_ids, "sc"].to_numpy(), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,layout", [("ipa", "tl"), ("dl_4610", "dl")])
def test_predict_command_with_published_weights(tmp_path, name, layout):
    net, path = save_published(tmp_path, name, layout)
    folder = tmp_path / "cifs"
    folder.mkdir()
    structures = crystals()[:4]
    for i, s in enumerate(structures):
        s.to(filename=str(folder / f"m{i}.cif"))
    result = run_prediction(path, folder, tmp_path / "out", format="parquet", workers=0, plot=0)
    assert result["n_predicted"] == 4 and result["model"]["layout"] == layout
    materials, _, eps = load_predictions(tmp_path / "out")
    assert list(materials.id) == [f"m{i}.cif" for i in range(4)]
    with torch.no_grad():
        # CIF round trips move coordinates in the last digits: compare at 1e-4.
        expected = net(reference_batch([type(s).from_file(folder / f"m{i}.cif") for i, s in enumerate(structures)]))
    np.testing.assert_allclose(eps, expected.numpy(), atol=1e-4, rtol=1e-4)
