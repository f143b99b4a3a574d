"""The learning targets by name and output width, without torch: what the configuration checks and the
``${target_dim:...}`` resolver read (:mod:`optimate_pl.models.targets` describes them in full)."""

#: ``data.target`` -> outputs per material: the Im ε spectrum on 2001 points, or the SC[RPA;IPA] number.
OUT_DIMS = {"eps_imag": 2001, "sc_rpa_ipa": 1}
