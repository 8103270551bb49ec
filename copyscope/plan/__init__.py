"""The plan stage: the games, their players and work items, and the coalitions the estimator will ask for
(`games`); coalition keys and their Gray-code and report order (`coalitions`). Written as plan.json."""
