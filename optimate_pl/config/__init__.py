"""The configuration: its schema and checks, resolution (once per command) and derived configs.

Commands compose ``conf/`` with Hydra, then call :func:`resolve_config` once; runs derived from a run
(pretraining, ensemble members, active-learning rounds) come from :func:`derive_config`.
"""
from .derive import DEBUG_TRAINER_KEYS, REMOVE, debug_mode, derive_config
from .groups import DL_SIZES, STRATEGIES, dl_architecture_for, load_group_config, load_train_config, model_net
from .resolve import check_compile_edges, check_config, check_start_weights, is_resolved, resolve_config, start_checkpoint, start_key
from .schema import ConfigError

__all__ = ["ConfigError", "DEBUG_TRAINER_KEYS", "DL_SIZES", "REMOVE", "debug_mode", "STRATEGIES", "check_compile_edges", "check_config",
           "check_start_weights", "derive_config", "dl_architecture_for", "is_resolved", "load_group_config", "load_train_config", "model_net", "resolve_config",
           "start_checkpoint", "start_key"]
