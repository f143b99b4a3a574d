"""The tools' counts are range-checked (a negative --top once queued thousands of DFT runs)."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("argv", [["--top", "-5"], ["--top", "0"], ["--top", "ten"], ["--max-sites", "0"]])
def test_next_rpa_refuses_counts_that_are_not_counts(argv, capsys):
    from optimate_pl.uncertainty.next_rpa import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "m.ckpt", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --" in err and ("not a count: give 1 or more" in err or "is not a whole number" in err)


def test_positive_int_accepts_counts():
    from optimate_pl.utils.tool import positive_int

    assert positive_int("1") == 1 and positive_int("300") == 300
