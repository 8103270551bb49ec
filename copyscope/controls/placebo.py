"""The placebo LoRA (``controls: {placebo: true}``): a negative control as strong as a real LoRA, with no content.

:func:`write_placebo` copies a plain LoRA file (down/up pairs) and replaces every pair by a *spectrum-matched
random* pair: the layer's update ``dW = up @ down`` (convolution kernels flattened) keeps its singular values,
hence its Frobenius norm and the strength of every layer, while its directions (the singular vectors) are drawn
at random (orthonormal, from numpy's ``default_rng`` with a child seed per layer). Alphas and every other tensor,
the tensor names, shapes, dtypes and the file's metadata are kept, so the file loads and scales exactly as its
source does. (Permuting a LoRA's entries is nearly inert: it breaks the alignment of the two factors and so
shrinks the update; matching the spectrum keeps the update's size.)

:func:`add_placebo_player` is called by :func:`copyscope.audit.prepare.prepare_audit` before the plan is built: it
writes the placebo of ``controls.placebo_from`` (default: the first LoRA) into the image cache's ``placebo/``
folder, content-addressed by the source's SHA-256 and the seed, and appends a LoRA player named ``placebo``.
Only safetensors files are read (never pickle); nothing here imports diffusers.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from ..common.files import file_sha256
from ..common.errors import CopyscopeError

PLACEBO_NAME = "placebo"
PLACEBO_VERSION = 1  # part of the file's address: a changed method never reuses an older file
METADATA_KEY = "copyscope_placebo"
# the LoRA layouts made of plain down/up pairs (copyscope.modelfiles.lora_layouts.LORA_LAYOUTS; "unknown": peft names with an
# adapter, lora_A.<adapter>.weight, which no known layout spells; every tensor is then checked to be a pair or an alpha)
_PLAIN = {"kohya", "kohya-transformer", "kohya-mixture", "diffusers", "diffusers-legacy", "bfl", "unknown"}
# <layer>.<role>[.<adapter>].weight: kohya, peft (also lora_embedding_A/B), older diffusers names
_PAIR_RE = re.compile(
    r"^(?P<layer>.+?)\.(?P<role>lora_down|lora_up|lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora\.down|lora\.up|"
    r"lora_linear_layer\.down|lora_linear_layer\.up)(?P<adapter>\.[^.]+)?\.weight$"
)
_LEGACY_RE = re.compile(r"^(?P<layer>.+_lora)\.(?P<role>down|up)\.weight$")  # attention-processor LoRA (to_q_lora.down)
_DOWN_ROLES = {"lora_down", "lora_A", "lora_embedding_A", "lora.down", "lora_linear_layer.down", "down"}
_UP_OF = {"lora_down": "lora_up", "lora_A": "lora_B", "lora_embedding_A": "lora_embedding_B", "lora.down": "lora.up",
          "lora_linear_layer.down": "lora_linear_layer.up", "down": "up"}
_DORA = re.compile(r"lora_magnitude_vector|dora_scale")
_LORA_ISH = re.compile(r"lora|hada_|lokr_|\.diff(_b)?$|\.oft_|\.on_input$|dora_scale|\.a1\.weight$")


def _refuse(src: Path, what: str) -> CopyscopeError:
    return CopyscopeError(f"the placebo needs a plain LoRA (down/up pairs); {src.name} is {what}", where=str(src))


def _pairs(src: Path, head: dict) -> dict[str, str]:
    """{down tensor: up tensor} of a plain LoRA's header; anything else LoRA-like (a DoRA magnitude, a LyCORIS
    factor, an unpaired down or up) is a one-line refusal."""
    from ..modelfiles.lora_layouts import LORA_LAYOUTS, lora_layout

    layout = lora_layout(head)
    if layout in ("empty", "not-lora"):
        raise _refuse(src, "not a LoRA (no tensor named like a LoRA's)")
    if layout not in _PLAIN:
        raise _refuse(src, f"a {LORA_LAYOUTS[layout]} file (layout {layout!r})")
    dora = sorted(k for k in head if _DORA.search(k))
    if dora:
        raise _refuse(src, f"a DoRA file (layout 'dora': {dora[0]})")
    downs: dict[tuple, str] = {}
    ups: dict[tuple, str] = {}
    for k in head:
        m = _PAIR_RE.match(k) or _LEGACY_RE.match(k)
        if m is None:
            if _LORA_ISH.search(k) and not k.endswith(".alpha"):
                raise _refuse(src, f"a LoRA of a layout not known here (layout {layout!r}: tensor {k})")
            continue
        role, adapter = m["role"], (m.groupdict().get("adapter") or "")
        if role in _DOWN_ROLES:
            downs[(m["layer"], _UP_OF[role], adapter)] = k
        else:
            ups[(m["layer"], role, adapter)] = k
    for key in sorted(set(downs) ^ set(ups)):
        name = downs.get(key) or ups[key]
        raise _refuse(src, f"inconsistent: {name} has no {'up' if key in downs else 'down'} partner (layer {key[0]})")
    if not downs:
        raise _refuse(src, f"a file without down/up pairs (layout {layout!r})")
    return {downs[key]: ups[key] for key in sorted(downs)}


def _layer_rng(seed: int, name: str) -> np.random.Generator:
    """A generator of its own for each layer (a child of ``seed``, keyed by the tensor name, not by the order)."""
    child = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, child]))


def _spectrum(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The singular values of up @ down (m x r times r x n), from the two small triangular factors."""
    _, ru = np.linalg.qr(up)  # (min(m, r), r)
    _, rd = np.linalg.qr(down.T)  # (min(n, r), r)
    return np.linalg.svd(ru @ rd.T, compute_uv=False)


def _frobenius(up: np.ndarray, down: np.ndarray) -> float:
    return float(np.linalg.norm(_spectrum(up, down)))


def _random_pair(up: np.ndarray, down: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(up', down') with up' @ down' = U' diag(S) V'^T: the singular values S of up @ down, random orthonormal U', V'."""
    (m, r), n = up.shape, down.shape[1]
    s = _spectrum(up, down)
    k = len(s)  # min(m, n, r)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    root = np.sqrt(s)
    new_up, new_down = np.zeros((m, r)), np.zeros((r, n))
    new_up[:, :k] = u * root
    new_down[:k, :] = (v * root).T
    return new_up, new_down


def write_placebo(src: Path, dst: Path, seed: int = 0) -> dict:
    """Write the placebo of the LoRA file ``src`` to ``dst`` (atomically) and return its stats: ``layers``
    (pairs replaced), ``norm_rel_diff`` ({down tensor: relative difference of the update's Frobenius norms,
    placebo vs source}) and its maximum, ``source_sha256`` and ``seed``."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save

    from ..common.files import atomic_write_bytes
    from ..modelfiles.formats import safetensors_header

    src, dst = Path(src), Path(dst)
    if src.suffix != ".safetensors":
        raise CopyscopeError(f"the placebo reads .safetensors files only; {src.name} is not one", where=str(src))
    try:
        head = safetensors_header(src)
    except (OSError, ValueError) as exc:
        raise CopyscopeError(f"{src.name} is not a valid .safetensors file ({exc}); expected a LoRA's weights",
                             where=str(src)) from None
    pairs = _pairs(src, head)
    with safe_open(str(src), framework="pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    diffs: dict[str, float] = {}
    for down_name, up_name in pairs.items():
        down_t, up_t = tensors[down_name], tensors[up_name]
        r = down_t.shape[0]
        if up_t.ndim < 2 or up_t.shape[1] != r or int(np.prod(up_t.shape[2:], dtype=np.int64)) != 1:
            raise _refuse(src, f"inconsistent: {up_name} {list(up_t.shape)} does not take the rank {r} of {down_name} "
                          f"{list(down_t.shape)} as a plain up weight (out, rank[, 1, 1])")
        up = up_t.detach().to(torch.float64).reshape(up_t.shape[0], r).numpy()
        down = down_t.detach().to(torch.float64).reshape(r, -1).numpy()
        new_up, new_down = _random_pair(up, down, _layer_rng(seed, down_name))
        tensors[up_name] = torch.from_numpy(new_up).reshape(up_t.shape).to(up_t.dtype).contiguous()
        tensors[down_name] = torch.from_numpy(new_down).reshape(down_t.shape).to(down_t.dtype).contiguous()
        written_up = tensors[up_name].to(torch.float64).reshape(up.shape).numpy()
        written_down = tensors[down_name].to(torch.float64).reshape(down.shape).numpy()
        before = _frobenius(up, down)
        diffs[down_name] = abs(_frobenius(written_up, written_down) - before) / before if before > 0 else 0.0
    stats = {"source_sha256": file_sha256(src), "seed": int(seed), "layers": len(pairs),
             "max_norm_rel_diff": max(diffs.values()), "version": PLACEBO_VERSION}
    metadata[METADATA_KEY] = json.dumps(stats, sort_keys=True)
    atomic_write_bytes(dst, _canonical(save(tensors, metadata=metadata)))
    return {**stats, "norm_rel_diff": diffs}


def _canonical(raw: bytes) -> bytes:
    """A safetensors file with its JSON header's keys sorted: safetensors writes the metadata in hash order, and
    the placebo's bytes (its cache identity) must be the same in every process that writes it."""
    n = int.from_bytes(raw[:8], "little")
    head = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the tensors stay 8-byte aligned, as safetensors pads
    return len(head).to_bytes(8, "little") + head + raw[8 + n:]


def read_placebo_stats(path: Path) -> dict | None:
    """The ``copyscope_placebo`` metadata of a placebo file (None: not one, or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            stats = json.loads((f.metadata() or {})[METADATA_KEY])
    except Exception:  # noqa: BLE001 - a damaged or foreign file: written again
        return None
    return stats if isinstance(stats, dict) else None


def placebo_path(cache_root: Path, source_sha256: str, seed: int) -> Path:
    """The placebo's content address: the source file's SHA-256, the seed and the method's version."""
    key = hashlib.sha256(f"{source_sha256}:{int(seed)}:{PLACEBO_VERSION}".encode()).hexdigest()
    return Path(cache_root) / "placebo" / f"{key}.safetensors"


def add_placebo_player(zoo, cache_root: Path) -> None:
    """With ``controls.placebo: true``: write (or reuse) the placebo of the source LoRA under ``cache_root/placebo/``
    and append it to the zoo's LoRAs as the player ``placebo``, at the source's weight. Sets ``zoo.placebo`` to the
    summary report.json records. Errors are one line naming the zoo key. (``placebo: swap``:
    copyscope.controls.placebo_swap.)"""
    from ..players import KINDS

    controls = zoo.spec.controls
    if controls.placebo is not True:
        return
    for cls in KINDS.values():
        for i, spec in enumerate(cls.specs(zoo)):
            if spec.name == PLACEBO_NAME:
                raise zoo.fail(f"a player is already named {PLACEBO_NAME!r}, the name of the placebo LoRA "
                               "(controls.placebo); rename it", cls.section, i, "name")
    loras = list(zoo.spec.loras)
    names = [lo.name for lo in loras]
    if not loras:
        raise zoo.fail("the placebo copies a LoRA's strength, and the zoo lists no LoRA; list one under loras: or "
                       "set controls.placebo: false", "controls", "placebo_from")
    wanted = controls.placebo_from or names[0]
    if wanted not in names:
        raise zoo.fail(f"unknown LoRA {wanted!r}; the LoRAs are {names}", "controls", "placebo_from")
    index = names.index(wanted)
    source = loras[index]
    dst, stats = placebo_file(zoo, index, cache_root)
    zoo.spec.loras.append(type(source)(name=PLACEBO_NAME, model=str(dst), weight=source.weight))
    zoo.placebo = {"player": PLACEBO_NAME, "from": wanted, **placebo_summary(stats, dst)}


def placebo_file(zoo, index: int, cache_root: Path, key: tuple = ("controls", "placebo_from")) -> tuple[Path, dict]:
    """The placebo of the zoo's LoRA ``index`` in the cache (written unless a valid one is there) and its stats;
    errors name the zoo ``key``."""
    path = _source_file(zoo, index, zoo.spec.loras[index], key)
    seed = zoo.spec.estimator.seed
    sha = file_sha256(path)
    dst = placebo_path(cache_root, sha, seed)
    stats = read_placebo_stats(dst) if dst.is_file() else None
    if stats is None or stats.get("source_sha256") != sha or stats.get("seed") != seed:
        stats = _write_into_cache(zoo, path, dst, seed, cache_root, key)
    return dst, stats


def placebo_summary(stats: dict, dst: Path) -> dict:
    """What report.json records of one placebo file."""
    return {"seed": stats.get("seed"), "source_sha256": stats.get("source_sha256"), "file": str(dst),
            "layers": stats.get("layers"), "max_norm_rel_diff": stats.get("max_norm_rel_diff")}


def _source_file(zoo, index: int, source, key: tuple) -> Path:
    """The source LoRA's local .safetensors file; else one line: the model's own error (a local path not found, a
    pickle file), or why the placebo cannot use it yet (a hub LoRA not in the local Hugging Face cache)."""
    from ..modelfiles.sources import model_source, weights_file

    path = weights_file(zoo, source)
    if path is not None:
        return path
    if zoo.is_local(source.model):
        model_source(zoo, source.model, source.revision, ("loras", index), allow_pickle=False)  # not found, pickle, ...
        raise zoo.fail(f"LoRA {source.name!r} ({source.model!r}) has no .safetensors file here; the placebo needs the "
                       "LoRA as a local .safetensors file", *key)
    raise zoo.fail(
        f"LoRA {source.name!r} is the hub LoRA {source.model!r}, not in the local Hugging Face cache; the placebo needs "
        f"its .safetensors file here: download it first (huggingface-cli download {source.model}) or point its model at "
        "a local copy", *key,
    )


def _write_into_cache(zoo, src: Path, dst: Path, seed: int, cache_root: Path, key: tuple) -> dict:
    from ..generate.cache import mark_cache

    try:
        Path(cache_root).mkdir(parents=True, exist_ok=True)
        mark_cache(Path(cache_root))  # a new cache folder is marked before the placebo lands in it (prune's guard)
        return write_placebo(src, dst, seed)
    except CopyscopeError as exc:
        raise zoo.fail(str(exc), *key) from None
    except OSError as exc:
        raise zoo.fail(f"cannot write the placebo LoRA to {dst} ({exc.strerror or exc})", "controls", "placebo") from None
