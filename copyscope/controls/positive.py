"""Positive controls: known copies made in the audit's own pipeline, to show whether a metric detects copying here.

For every work, its first reference image goes through the base's own img2img pipeline (the family's
``img2img`` class, by default diffusers' ``AutoPipelineForImage2Image``, over the loaded base, every add-on player
off, at the generation size) at each strength of
``controls.strengths``, with the work's prompt and the first ``controls.seeds`` seeds: strength 0 is the work
itself, strength 1 keeps nothing of it. The same img2img of ``controls.negatives`` background images gives known
non-copies that went through exactly the same processing. Per metric (per-image metrics; set metrics compare
sets and have no per-image control):

* the dose-response: the mean score of the copies and of the non-copies at each strength, and their gap;
* the AUC: the probability that a copy scores above a non-copy at the same strength, averaged over the
  strengths, with a bootstrap interval over seeds. A metric whose AUC is below 0.7 (the conventional bar of
  acceptable discrimination) or whose interval reaches 0.5 cannot tell these copies from generic images in
  this audit: it is reported as blind.

These images are not the audit's coalitions (different sources, their own cache keys), so a headline chosen
from them is not chosen on the data it is then tested on (copyscope.controls.headline).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

# part of every control image's key; images made at the generation size by img2img pipelines that take a size, or
# with a true-CFG negative prompt, add fields of their own (ensure_control_images), so SD's and SDXL's keys stay as
# they were
CONTROL_VERSION = 1
DEFAULT_SEEDS = 4
N_BOOT = 2000


@dataclass
class ControlImage:
    work: str
    source: str  # "work" or the background image's label
    strength: float
    seed: int
    key: str


def control_items(items, works: list[str], n_seeds: int | None) -> dict[str, list]:
    """work -> the work items its controls use: the work's first prompt (else the first prompt tied to no
    work), at the first ``n_seeds`` seeds (default: up to ``DEFAULT_SEEDS``)."""
    out = {}
    for w in works:
        mine = [it for it in items if it.work == w] or [it for it in items if it.work is None] or list(items)
        prompt = mine[0].prompt
        chosen = [it for it in mine if it.prompt == prompt]
        out[w] = chosen[: n_seeds or DEFAULT_SEEDS]
    return out


def _base_only(game) -> tuple[bool, ...]:
    return tuple(p.kind == "base" for p in game.players)


def ensure_control_images(engine, cache, refs, background, spec, items) -> list[ControlImage]:
    """Generate (cache first) every control image of one game; returns them with their cache keys."""
    from ..common.files import key_of
    from .background import fit_to, pixel_sha256

    h, w = engine.gen.size
    members = _base_only(engine.game)
    by_work = control_items(items, refs.works, spec.seeds)
    sized, true_cfg = _img2img_takes_size(engine), _true_cfg(engine)
    negatives = list(zip(background.labels, background.images))[: spec.negatives]
    out: list[ControlImage] = []
    todo: dict[tuple, list] = {}  # (source sha, strength) -> [(ControlImage, item, fields, source image)]
    for work, its in by_work.items():
        first = refs.images[refs.work_of.index(work)]
        for label, img in [("work", first)] + negatives:
            src = fit_to(img, (h, w))
            sha = pixel_sha256(src)
            for s in spec.strengths:
                for it in its:
                    img2img = {"source": sha, "strength": float(s), "control": CONTROL_VERSION}
                    # the keys of images made before these pipelines were given the size and the negative prompt
                    # (Flux / SD3 made them at their default size; Flux's true CFG ran without negatives) stay apart
                    if sized:
                        img2img["sized"] = True
                    if true_cfg:
                        img2img["negative_prompt"] = True
                    fields = {**engine.image_fields(members, it), "img2img": img2img}
                    c = ControlImage(work, label, float(s), it.seed, key_of(fields))
                    out.append(c)
                    if not cache.has(c.key):
                        todo.setdefault((sha, float(s)), []).append((c, it, fields, src))
    if todo:
        pipe = None
        for (_, s), batch in todo.items():
            if s <= 0.0 or int(engine.gen.steps * s) < 1:  # no denoising step: the source itself
                images = [b[3] for b in batch]
            else:
                pipe = pipe or _img2img_pipe(engine, members)
                images = _img2img(engine, pipe, members, [b[1] for b in batch], batch[0][3], s)
            for (c, _, fields, _), img in zip(batch, images):
                cache.put(c.key, np.asarray(img, dtype=np.float32), {**fields, "coalition": f"control:{c.source}"}, [])
    return out


def _img2img_class(family):
    """The diffusers class of the family's img2img pipeline (``Family.img2img``; through diffusers' auto-pipeline
    mapping by default), None where it has none."""
    import diffusers

    if family.img2img is None:
        return None
    if family.img2img == "AutoPipelineForImage2Image":
        from diffusers.pipelines.auto_pipeline import AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, _get_task_class

        return _get_task_class(AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, family.pipeline, throw_error_if_not_exist=False)
    return getattr(diffusers, family.img2img)


def _img2img_takes_size(engine) -> bool:
    """The family's img2img pipeline takes height / width (SD3, Flux, Qwen-Image, Z-Image, Chroma; SD's and SDXL's
    keep the source's size): given the audit's size, or it would make images at its own default size (1024 px for
    Flux)."""
    cls = _img2img_class(engine.family)
    return cls is not None and {"height", "width"} <= set(inspect.signature(cls.__call__).parameters)


def _true_cfg(engine) -> bool:
    """The family takes a negative prompt only with real CFG on (Flux, Qwen-Image with ``true_cfg_scale > 1``)."""
    return not engine.family.negative_prompt and engine.family.takes_negative_prompt(engine.gen)


def _img2img_pipe(engine, members):
    """The family's img2img pipeline over the engine's loaded base (modules shared, add-ons switched off)."""
    import diffusers

    engine.load()
    base = engine.activate(members)
    pipe = getattr(diffusers, engine.family.img2img).from_pipe(base)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _img2img(engine, pipe, members, items, source: np.ndarray, strength: float) -> list[np.ndarray]:
    import torch
    from PIL import Image

    from ..common.files import to_uint8
    from ..families import family_call_kwargs

    accepted = set(inspect.signature(pipe.__call__).parameters)
    extra = {k: v for k, v in family_call_kwargs(engine.family, engine.gen).items() if k in accepted}
    if {"height", "width"} <= accepted:  # the audit's size (see _img2img_takes_size)
        extra["height"], extra["width"] = engine.gen.size
    src = Image.fromarray(to_uint8(source))
    out = []
    bs = engine.gen.batch_size
    for start in range(0, len(items), bs):
        chunk = items[start : start + bs]
        kwargs = dict(prompt=[engine.game.prompt_text(members, i) for i in chunk], image=[src] * len(chunk),
                      strength=float(strength),
                      num_inference_steps=engine.gen.steps, guidance_scale=engine.gen.guidance,
                      generator=[torch.Generator("cpu").manual_seed(i.seed) for i in chunk], output_type="np", **extra)
        if engine.family.takes_negative_prompt(engine.gen) and any(i.negative for i in chunk):  # as the engine's calls
            kwargs["negative_prompt"] = [i.negative for i in chunk]
        # what each kind adds with none of its players active (an IP-Adapter's images at scale 0, ...), as the
        # engine's own calls do; an inactive ControlNet adds nothing, so `image` stays the img2img source
        active = engine._active_players(members)
        for kind, cls in engine._kinds():
            cls.call_kwargs(engine, active[kind], chunk, kwargs)
        with torch.inference_mode():
            out += [np.asarray(im, dtype=np.float32) for im in pipe(**kwargs).images]
    return out


def control_scores(scorer, metric, controls: list[ControlImage]) -> np.ndarray:
    """(n,) each control image's score against its own work, as the audit scores (raw or specific). A
    non-copy made from a background image is scored against the background without that image."""
    from ..score.scorer import within_work_scores
    from .worth import specific_scores

    keys = [c.key for c in controls]
    sims = scorer.rows(metric, keys)
    raw = np.empty(len(controls))
    for work in dict.fromkeys(c.work for c in controls):
        idx = [i for i, c in enumerate(controls) if c.work == work]
        raw[idx] = within_work_scores(sims[idx], scorer.refs.work_of, [work], scorer.aggregate)[:, 0]
    if scorer.worth == "raw":
        return raw
    b = scorer.background_rows(metric, keys)
    labels = scorer.background.labels
    out = np.empty(len(controls))
    for i, c in enumerate(controls):
        keep = [j for j, lab in enumerate(labels) if lab != c.source]
        out[i] = specific_scores(raw[i : i + 1], b[i : i + 1, keep], scorer.worth)[0]
    return out


def run_positive_controls(engine, cache, scorer, refs, background, spec, items, level: float = 0.95,
                          on_event=None) -> dict:
    """The controls of one game: images (generated or from the cache), then per per-image metric its
    sensitivity (copyscope.controls.sensitivity). What report.json records under the game's ``controls``."""
    from .sensitivity import sensitivity

    if on_event:
        on_event(f"positive controls: img2img of {len(refs.works)} work(s) and {min(spec.negatives, len(background))} "
                 f"background image(s) at strengths {', '.join(f'{s:g}' for s in spec.strengths)}")
    controls = ensure_control_images(engine, cache, refs, background, spec, items)
    per_metric = {}
    for name, metric in scorer.metrics.items():
        if metric.kind != "per_image":
            continue
        scores = control_scores(scorer, metric, controls)
        per_metric[name] = sensitivity(scores, [c.work for c in controls], [c.source == "work" for c in controls],
                                       [c.strength for c in controls], [c.seed for c in controls], level=level,
                                       n_boot=N_BOOT, rng_seed=0)
    images: dict[str, dict[str, dict[str, list[str]]]] = {}
    for c in controls:
        images.setdefault(c.work, {}).setdefault(c.source, {}).setdefault(f"{c.strength:g}", []).append(c.key)
    return {
        "strengths": list(spec.strengths),
        "seeds": sorted({c.seed for c in controls}),
        "non_copy_sources": [lab for lab in background.labels[: spec.negatives]],
        "images": images,
        "metrics": per_metric,
    }


def background_view(scorer, image_keys: dict, key_of_coalition) -> dict:
    """For the report's view (never for a choice): per per-image metric and coalition, the mean similarity of the
    coalition's images to the work and to each background image: the background's distribution with each
    coalition marked. ``image_keys``: coalition -> its images' cache keys; ``key_of_coalition``: coalition -> its
    report key. ``scorer`` must have a background."""
    from ..score.metrics import aggregate_references

    out: dict[str, dict] = {}
    for name, metric in scorer.metrics.items():
        if metric.kind != "per_image":
            continue
        rows = {}
        for c, keys in image_keys.items():
            work = aggregate_references(scorer.rows(metric, keys), scorer.refs.work_of, scorer.aggregate)
            bg = scorer.background_rows(metric, keys)
            rows[key_of_coalition(c)] = {"work": float(np.mean(work)), "background": [float(x) for x in bg.mean(axis=0)]}
        out[name] = rows
    return {"labels": list(scorer.background.labels), "metrics": out}
