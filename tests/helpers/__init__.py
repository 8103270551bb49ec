"""Helpers shared by test modules (no tests here; test modules never import each other).

``zoo``: zoo files over the tiny models, reference images, brute-force Shapley of report worths.
``audit_run``: one audit + ablation per session for the report and ablation tests.
``cli_errors``: the bad-input harness (one-line errors, untouched output folders, a stub generator).
``subprocess_audit``: audits as subprocesses (resume, concurrency, determinism) and report comparison.
"""
