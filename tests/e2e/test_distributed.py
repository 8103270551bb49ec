"""Distributed generation: the same audit with 1 and 2 processes (CPU, gloo) gives the same report;
the planned coalitions are exactly those the audit evaluates; chunks are split without overlap."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from copyscope.audit import AuditHooks, audit_zoo, prepare_audit, run_audit
from copyscope.audit.distributed import (
    count_planned,
    generate_share,
    launched_world_size,
    merge_generation,
    planned_coalitions,
)
from helpers.zoo import make_zoo_file

from helpers.paths import REPO


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    # same thread count in both runs: CPU kernels may sum in another order with another count
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = _env()
    env["COPYSCOPE_CACHE"] = str(cwd / "out" / "cache")  # each run its own cold cache
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def two_runs(tiny_models, tmp_path_factory):
    single = tmp_path_factory.mktemp("single")
    dual = tmp_path_factory.mktemp("dual")
    zoo1 = make_zoo_file(single, tiny_models)
    zoo2 = make_zoo_file(dual, tiny_models)
    audit_zoo(zoo1)  # in this process, one thread (the fixture above), like each launched process
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), "-m", "copyscope.cli", "audit", str(zoo2),
    ]
    r2 = _run(launch, dual)
    return (
        json.loads((single / "out" / "report.json").read_text()),
        json.loads((dual / "out" / "report.json").read_text()),
        r2.stdout + r2.stderr,
    )


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_two_processes_give_the_single_process_report(two_runs):
    one, two, _ = two_runs
    g1, g2 = one["games"][0], two["games"][0]
    assert g1["images"] == g2["images"]  # same cache keys for every coalition
    for name, m in g1["metrics"].items():
        assert g2["metrics"][name]["coalitions"] == m["coalitions"], name
        assert g2["metrics"][name]["shapley"] == m["shapley"], name


@pytest.mark.slow  # a shared module fixture runs audits / training (pyproject: markers)
def test_two_processes_split_the_work_and_report_summed_counts(two_runs):
    one, two, output = two_runs
    assert one["generation"]["generated"] == 16 and one["generation"]["cached"] == 0
    gen = two["generation"]
    assert gen["processes"] == 2
    assert gen["generated"] == 16 and gen["cached"] == 0
    assert gen["generated_while_scoring"] == 0  # the plan covered every coalition
    assert sorted(p["rank"] for p in gen["per_process"]) == [0, 1]
    assert [p["generated"] for p in gen["per_process"]] == [8, 8]  # 8 chunks of 2 images, round robin
    assert output.count("Shapley attribution") == 1  # only process 0 reports


def test_plain_run_is_not_distributed(monkeypatch):
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert launched_world_size() == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_world_size() == 4


@pytest.mark.parametrize(
    "estimator",
    [{"bootstrap": 20}, {"method": "kernelshap", "budget": 6, "bootstrap": 20}, {"method": "permutation", "budget": 10, "bootstrap": 20}],
)
def test_planned_coalitions_do_not_depend_on_worths(tiny_models, tmp_path, estimator):
    """The estimator's plan (planned_coalitions, plan.json) is exactly what estimate_game asks the
    game for, whatever the worths are; plan.json lists the same keys in the same order."""
    from copyscope.estimate.per_game import estimate_game

    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, estimator=estimator,
                        prompt_players=[{"name": "artist", "text": "by ada painter"}])
    prep = prepare_audit(zoo)
    game = prep.plan.games[0]
    planned = planned_coalitions(prep, game)
    assert len(planned) == len(set(planned))

    class Recording:
        """Stands in for the evaluator: records what is asked for, answers with made-up worths."""

        resampling = "bootstrap"

        def __init__(self, worth):
            self.worth, self.requested = worth, []
            self.worths, self.set_results, self.flags, self.image_keys, self.work_worths = {}, {}, {}, {}, {}

        def values(self, coalitions, metric):
            rows = [tuple(bool(x) for x in r) for r in np.asarray(coalitions, dtype=bool)]
            for c in rows:
                if c not in self.worths:
                    self.requested.append(c)
                    self.worths[c] = {m.name: self.worth(c, 1 + prep.zoo.spec.estimator.bootstrap) for m in prep.metrics}
                    self.set_results[c] = {}
            return np.stack([self.worths[c][metric] for c in rows])

    rng = np.random.default_rng(0)
    for worth in (lambda c, w: np.full(w, float(sum(c)) ** 2 - 0.3 * c[0]), lambda c, w: rng.normal(size=w)):
        rec = Recording(worth)
        estimate_game(prep, game, rec)
        assert set(rec.requested) == set(planned)
    if "budget" in estimator:
        assert len(planned) < 2**game.n_players
    assert count_planned(prep) == [len(planned)]
    listed = prep.plan.to_dict([planned])["games"][0]
    assert listed["coalitions"] == [game.coalition_key(c) for c in planned] and listed["n_coalitions"] == len(planned)


def test_assign_chunks_is_round_robin_and_balances_short_chunks():
    from copyscope.audit.distributed import assign_chunks

    assert assign_chunks([4] * 7, 3) == [0, 1, 2, 0, 1, 2, 0]
    owners = assign_chunks([2, 1] * 6, 2)  # plain i % 2 would give rank 1 every short chunk
    images = [sum(s for s, o in zip([2, 1] * 6, owners) if o == r) for r in (0, 1)]
    assert images == [9, 9] and owners.count(0) == owners.count(1) == 6


def test_shares_cover_every_chunk_once_and_the_audit_finds_them(tiny_models, tmp_path, monkeypatch):
    """Two ranks generated in turn (in-process): each chunk exactly once, then the audit generates
    nothing, for a sampled estimator (its coalitions are known in advance)."""
    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # a cold cache of its own
    zoo = make_zoo_file(tmp_path, tiny_models, loras=2, controlnet=False,
                        prompt_players=[{"name": "artist", "text": "by ada painter"}],
                        estimator={"method": "kernelshap", "budget": 6, "bootstrap": 20},
                        generation={"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 3, "batch_size": 2, "scheduler": "ddim"})
    prep = prepare_audit(zoo)
    n_coal = len(planned_coalitions(prep, prep.plan.games[0]))
    assert n_coal < 8
    shares = [generate_share(prep, r, 2) for r in (0, 1)]
    assert [s.chunks for s in shares] == [n_coal, n_coal]  # 3 items in chunks of 2: 2 chunks per coalition
    assert [s.generated for s in shares] in ([n_coal * 3 // 2, n_coal * 3 - n_coal * 3 // 2],
                                             [n_coal * 3 - n_coal * 3 // 2, n_coal * 3 // 2])
    report = run_audit(prepare_audit(zoo), generation_adjust=lambda g: merge_generation(g, shares), hooks=AuditHooks())
    gen = report["generation"]
    assert gen["generated_while_scoring"] == 0
    assert gen["generated"] == n_coal * 3 and gen["cached"] == 0
    assert len(report["games"][0]["metrics"]["ssim"]["coalitions"]) == n_coal
