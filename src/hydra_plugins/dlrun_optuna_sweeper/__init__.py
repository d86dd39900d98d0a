"""dlrun's Hydra sweeper: hyperparameter search with Optuna (>= 4), with per-epoch pruning.

Hydra imports every module of the `hydra_plugins` namespace package at start-up, so nothing here
imports Optuna: config.py registers the sweeper's config, optuna_sweeper.py its class, and the
search itself (_space.py, _search.py; Hydra's scan skips modules named with a leading `_`) is
imported when a search starts.
"""
