"""The analyses: commands that reuse an audit's engine, image cache and references to answer other
questions than the audit's attribution.

- :mod:`.ablate` — ``copyscope ablate``: metric agreement, seeds needed, ground-truth recovery, on
  the audit's cached generations (writes into the audit's output folder).
- :mod:`.reward_split` — ``copyscope reward-split``: Glinsky & Sokolsky's split of a reward between
  artists (prompt players) and the model.
- :mod:`.imitation` — ``copyscope imitation``: Casper et al.'s test of whether the base can imitate
  an artist (with :mod:`.clip_zero_shot`, CLIP zero-shot identification).
- :mod:`.harness` — what every analysis shares with the audit: the zoo's checks, the output-folder
  rule, the image cache, the device, the references, building a metric, cached CLIP embeddings,
  writing the result JSON.
- :mod:`.specs` — the zoo-file sections of the analyses (``reward_split:``, ``imitation:``).

A new analysis is a module here (a ``run_<name>(zoo_path, out, ...)`` that opens an
:class:`~.harness.AnalysisContext` and returns its result dict, plus ``<name>_tables``), its zoo
section in :mod:`.specs` if it has settings, and a command in ``copyscope/cli.py``
(docs/ARCHITECTURE.md, "Adding an analysis"). Nothing here is imported by the audit or the report.
"""
