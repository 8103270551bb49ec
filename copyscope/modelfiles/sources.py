"""Model sources: where each model of a zoo comes from, and every check that can be made on it before
anything loads. The pickle policy, path checks, safetensors headers, the families of bases and
add-on players, the LoRA-fits-base check (local files, folders with ``weight_name``, hub files in the
local Hugging Face cache), and the one-line error for a model that fails to load. The engine and the
player kinds (copyscope.players) use these; nothing here imports torch or diffusers."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..common.files import tree_sha256
from ..config.base import PICKLE_SUFFIXES
from ..config.zoo import Zoo
from ..common.errors import CopyscopeError
from .formats import safetensors_header  # noqa: F401 (re-exported: the header reader of every check)


@dataclass
class ModelSource:
    """Where a model comes from, and its identity for cache keys."""

    value: str
    local: Path | None
    revision: str | None

    def identity(self, suffixes=(".safetensors", ".json", ".txt", ".model")) -> dict:
        if self.local is not None:
            return {"local_sha256": tree_sha256(self.local, suffixes)}
        return {"hub_id": self.value, "revision": self.revision or "main"}


def model_source(zoo: Zoo, value: str, revision: str | None, loc: tuple, allow_pickle: bool) -> ModelSource:
    """The source of a zoo model; a missing path, a pickle file without ``allow_pickle`` or an invalid
    safetensors file is a one-line error naming ``loc``."""
    if not zoo.is_local(value):
        return ModelSource(value, None, revision)
    path = zoo.resolve_path(value)
    if not path.exists():
        raise zoo.fail(f"model path {value!r} not found (looked at {path})", *loc, "model")
    if not path.is_file() and not path.is_dir():
        raise zoo.fail(
            f"model path {value!r} is not a regular file or folder (a FIFO, socket or device); expected a .safetensors "
            "file or a diffusers folder", *loc, "model",
        )
    if path.is_file() and path.suffix in PICKLE_SUFFIXES and not allow_pickle:
        raise zoo.fail(
            f"{path.name} is a pickle checkpoint, which can run code when loaded; convert it to "
            ".safetensors, or pass --allow-pickle if you trust it", *loc, "model",
        )
    if path.is_file() and path.suffix not in (".safetensors",) + PICKLE_SUFFIXES:
        raise zoo.fail(f"{path.name}: expected a .safetensors file or a diffusers folder", *loc, "model")
    if path.is_dir() and path.suffix in (".safetensors",) + PICKLE_SUFFIXES:
        raise zoo.fail(f"{value!r} is a folder; expected a {path.suffix} file", *loc, "model")
    if path.is_dir() and not allow_pickle:
        only_pickle = pickle_only_parts(path)
        if only_pickle:
            raise zoo.fail(
                f"{value!r} has pickle weights only (.bin/.ckpt/.pt in {', '.join(only_pickle)}), which can run "
                "code when loaded; expected .safetensors weights: convert them, or pass --allow-pickle if you trust them",
                *loc, "model",
            )
    # every safetensors file: the file itself, or those of a folder (a diffusers model's weights)
    for f in [path] if path.is_file() else sorted(path.rglob("*.safetensors")):
        if f.suffix != ".safetensors" or not f.is_file():
            continue
        try:
            safetensors_header(f)
        except Exception as exc:  # noqa: BLE001 - truncated download, wrong file renamed, malformed header: any is one line
            name = f.name if f == path else f.relative_to(path).as_posix()
            raise zoo.fail(
                f"{name} is not a valid .safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "expected intact safetensors weights", *loc, "model",
            ) from None
    return ModelSource(value, path, revision)


def pickle_only_parts(folder: Path) -> list[str]:
    """The pickle policy's test of a model folder: its sub-folders (a diffusers component such as unet/,
    or "." for the folder itself) that hold pickle weights and no .safetensors, which load only with
    --allow-pickle. Used for zoo models here and for the metric backbones' folders."""
    def parts(suffixes):
        return {f.parent.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file() and f.suffix in suffixes}

    return sorted(parts(PICKLE_SUFFIXES) - parts((".safetensors",)))


def hub_offline() -> bool:
    """Whether the Hugging Face hub is off limits (HF_HUB_OFFLINE in the environment or huggingface_hub's constants)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def cached_snapshot(repo: str, revision: str | None = None) -> Path | None:
    """A hub repo's folder in the local Hugging Face cache (no network), or None when it is not there."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, invalid repo id, no huggingface_hub, ...: not cached
        return None


# diffusers' load_lora_weights reads this file when no weight_name is given
DEFAULT_LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def cached_hub_file(repo: str, filename: str, revision: str | None = None) -> Path | None:
    """The local copy of a hub file in the Hugging Face cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename, revision=revision)
    except Exception:  # noqa: BLE001 - invalid repo id, no huggingface_hub, ...: not cached
        return None
    return Path(found) if isinstance(found, str) else None


def weights_file(zoo: Zoo, spec, default: str = DEFAULT_LORA_WEIGHTS) -> Path | None:
    """The local .safetensors file an add-on (a LoRA) loads from, without downloading anything: the
    file itself, ``weight_name`` (or the default name) in a local folder, or the hub file in the local
    Hugging Face cache. None when there is none yet (a hub file not downloaded) or it is not safetensors."""
    name = getattr(spec, "weight_name", None) or default
    if zoo.is_local(spec.model):
        path = zoo.resolve_path(spec.model)
        if path.is_dir():
            path = path / name
    else:
        path = cached_hub_file(spec.model, name, getattr(spec, "revision", None))
    if path is None or not path.is_file() or path.suffix != ".safetensors":
        return None
    return path


def local_base(zoo: Zoo, base) -> Path | None:
    """A base's local folder or single file: the zoo's path, or its snapshot in the local Hugging Face
    cache (no network); None when neither exists."""
    return zoo.resolve_path(base.model) if zoo.is_local(base.model) else cached_snapshot(base.model, base.revision)


def hub_error(zoo: Zoo, exc: Exception, src: ModelSource, loc: tuple) -> CopyscopeError:
    """A failed load as one line naming the zoo key."""
    text = f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    # diffusers' "check out the root cause in the stacktrace above": no stack trace is shown, so
    # name the cause instead
    if "stacktrace above" in text.lower():
        text = re.sub(r"\s*[^.]*stacktrace above\.?", "", text, flags=re.I).strip()
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause):
            text += f" (cause: {cause.__class__.__name__}: {str(cause).splitlines()[0][:200]})"
    if src.local is None:
        return zoo.fail(
            f"cannot load hub model {src.value!r} ({text}); if this machine is offline, download it first "
            f"(huggingface-cli download {src.value}) or point 'model' at a local copy", *loc, "model",
        )
    if "safetensors" in text and src.local.is_dir() and any(
        f.suffix in PICKLE_SUFFIXES for f in src.local.rglob("*") if f.is_file()
    ):
        # a diffusers folder saved with pickle weights: from_pretrained(use_safetensors=True) refused it
        return zoo.fail(
            f"cannot load {src.value!r}: it holds pickle weights (.bin/.ckpt), and only .safetensors are loaded "
            f"by default; convert them, or pass --allow-pickle if you trust them ({text})", *loc, "model",
        )
    return zoo.fail(f"cannot load {src.value!r}: {text}", *loc, "model")


_hub_error = hub_error  # the old private name


_control_memo: dict[tuple, object] = {}


def load_control(path: Path, w: int, h: int):
    """A conditioning (or image-prompt) image as RGB at (w, h), memoised by the file's content: a file
    changed during a run is read again, so the pixels always match the image key's hash of it."""
    from PIL import Image

    data = Path(path).read_bytes()
    key = (hashlib.sha256(data).hexdigest(), w, h)
    if key not in _control_memo:
        import io

        from ..common.inputs import read_image

        # EXIF orientation applied, as for every image copyscope reads
        _control_memo[key] = read_image(io.BytesIO(data)).convert("RGB").resize((w, h), Image.BICUBIC)
        if len(_control_memo) > 256:  # a few MB at most; oldest first
            _control_memo.pop(next(iter(_control_memo)))
    return _control_memo[key]
