"""A run repeats exactly with the same torch thread count, which metrics.json records (the count changes the numbers)."""
from __future__ import annotations

import torch


def test_a_run_repeats_exactly_and_records_its_thread_count(tmp_path, cfg_train):
    from optimate_pl.training.stages import run

    before = torch.get_num_threads()
    try:
        def once(folder, threads):
            torch.set_num_threads(threads)
            metrics = run(cfg_train(tmp_path / folder, "strategy=dl", "data.subset=50", "trainer.max_epochs=3",
                                    "test=false"))
            weights = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
            return metrics, weights

        first, a = once("a", 1)
        again, b = once("b", 1)
        assert first["torch_threads"] == again["torch_threads"] == 1
        assert first["val/sc_median"] == again["val/sc_median"]
        assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
        two, _ = once("c", 2)
        assert two["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
