import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from optimate_pl.spectra.metrics import (AbsoluteError, SimilarityCoefficient, SpectralMAE, SpectralMSE, median,
                                 similarity_coefficient)


def test_sc_against_hand_computation():
    x = torch.tensor([[0.0, 1.0, 2.0]])
    ref = torch.tensor([[1.0, 1.0, 1.0]])
    # trapz|x - ref| = (1+0)/2 + (0+1)/2 = 1 ; trapz|ref| = 2 -> SC = 0.5
    assert similarity_coefficient(x, ref).item() == pytest.approx(0.5)
    # The direction matters: with x as the reference, trapz|x| = 0.5 + 1.5 = 2 -> also 0.5 here,
    # so use an asymmetric pair: trapz|y| = 4 vs trapz|ref| = 2.
    y = torch.tensor([[2.0, 2.0, 2.0]])
    assert similarity_coefficient(y, ref).item() == pytest.approx(0.0)       # 1 - 2/2
    assert similarity_coefficient(ref, y).item() == pytest.approx(0.5)       # 1 - 2/4


def test_sc_uses_the_energy_grid_trapezoid():
    w = np.linspace(0, 20, 2001)
    a, b = np.exp(-((w - 5) ** 2)), 0.5 * np.exp(-((w - 6) ** 2))
    expected = 1 - np.trapezoid(np.abs(a - b), w) / np.trapezoid(np.abs(b), w)
    got = similarity_coefficient(torch.tensor(a), torch.tensor(b), torch.tensor(w))
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert similarity_coefficient(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(expected, rel=1e-10)


def test_zero_reference_is_defined_not_nan():
    z = torch.zeros(1, 5)
    assert similarity_coefficient(z, z).item() == 1.0
    assert similarity_coefficient(torch.ones(1, 5), z).item() == float("-inf")


def test_mse_mae_and_numpy_median():
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0], [1.0, 1.0]])
    y = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [2.0, 1.0]])
    mse, mae = SpectralMSE(), SpectralMAE()
    mse.update(x[:3], y[:3]); mse.update(x[3:], y[3:])
    mae.update(x, y)
    per_mse = [2.5, 0.0, 4.0, 0.5]
    assert mse.compute().item() == pytest.approx(np.median(per_mse))   # (0.5 + 2.5) / 2 = 1.5
    assert mse.compute().item() == pytest.approx(1.5)
    assert mae.compute().item() == pytest.approx(np.median([1.5, 0.0, 2.0, 0.5]))
    assert median(torch.tensor([3.0, 1.0, 2.0])).item() == 2.0
    sc = SimilarityCoefficient(reduction="none")
    sc.update(x, y + 1)
    assert sc.compute().shape == (4,)
    ae = AbsoluteError(reduction="mean")
    ae.update(torch.tensor([[0.5], [0.9]]), torch.tensor([[0.7], [0.8]]))
    assert ae.compute().item() == pytest.approx(0.15)


def _ddp_worker(rank, world, port, results, tiny_cache):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    x, y = torch.rand(7, 50), torch.rand(7, 50)
    mine = slice(0, 5) if rank == 0 else slice(5, 7)  # uneven: 5 and 2 samples
    sc, mse = SimilarityCoefficient(), SpectralMSE()
    sc.update(x[mine], y[mine]); mse.update(x[mine], y[mine])
    out = {"sc": sc.compute().item(), "mse": mse.compute().item()}
    # Evaluation loaders under DDP must see every material exactly once (no padding duplicates).
    from optimate_pl.data import RPADataModule
    from tests.conftest import TINY_SIZES

    dm = RPADataModule(source="synthetic", cache_dir=tiny_cache, synthetic_sizes=TINY_SIZES, eval_batch_size=7)
    dm.setup()
    out["val_ids"] = [m for b in dm.val_dataloader() for m in b.mat_id]
    results[rank] = out
    dist.destroy_process_group()


def test_metrics_and_eval_sampling_under_ddp_match_single_process(tiny_rpa, cache_dir):
    torch.manual_seed(0)
    x, y = torch.rand(7, 50), torch.rand(7, 50)
    single_sc, single_mse = SimilarityCoefficient(), SpectralMSE()
    single_sc.update(x, y); single_mse.update(x, y)
    port = 29500 + np.random.randint(0, 2000)
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, results, str(cache_dir)), nprocs=2, join=True)
    for rank in (0, 1):
        assert results[rank]["sc"] == pytest.approx(single_sc.compute().item(), rel=1e-6)
        assert results[rank]["mse"] == pytest.approx(single_mse.compute().item(), rel=1e-6)
    seen = results[0]["val_ids"] + results[1]["val_ids"]
    assert sorted(seen) == sorted(tiny_rpa.val_set.mat_ids)  # 20 materials over 2 ranks, no duplicates
