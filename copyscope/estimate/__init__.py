"""The estimate stage: `per_game.estimate_game` runs the estimator per metric (plus leave-one-out, Banzhaf,
the fusion and per-work games) and returns plain data; `shapley/` holds the estimators, intervals and tests."""
