"""CLIP zero-shot classification (Radford et al. 2021) for the prompt-level analyses.

:class:`ClipZeroShot` loads a full ``CLIPModel`` (image and text towers, ``logit_scale``) and its
tokenizer from ``backbones.clip`` in the zoo file: a local folder (``save_pretrained``) or a hub id
already in the local Hugging Face cache; like every backbone, it never downloads. Images are
preprocessed exactly as the ``clip`` metric does (resize, centre crop, normalisation from the
folder's ``preprocessor_config.json``), so its image embeddings equal the metric's features for the
same checkpoint.

Pure functions (numpy only, tested on synthetic embeddings): :func:`normalise`,
:func:`zero_shot_probabilities`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..common.errors import CopyscopeError, MissingDependency
from ..score.metrics.backbones import _HUB_ID, CLIPBackbone, _torch


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def zero_shot_probabilities(image_emb: np.ndarray, text_emb: np.ndarray, logit_scale: float = 100.0) -> np.ndarray:
    """(n_images, n_labels) softmax over labels of ``logit_scale * cos(image, label)``.

    This is CLIP's zero-shot classifier: the label whose text embedding is closest (cosine) to the
    image embedding is the most probable; ``logit_scale`` (CLIP's learned temperature, 100 for the
    OpenAI checkpoints) only sharpens or flattens the probabilities, never changes their order.
    """
    img = normalise(image_emb)
    txt = normalise(text_emb)
    if img.ndim != 2 or txt.ndim != 2 or img.shape[1] != txt.shape[1]:
        raise CopyscopeError(f"zero-shot: embeddings must be (n, d) and (k, d), got {img.shape} and {txt.shape}")
    if txt.shape[0] == 0:
        raise CopyscopeError("zero-shot: no labels")
    logits = float(logit_scale) * (img @ txt.T)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _one_line(exc: BaseException) -> str:
    text = f"{exc.__class__.__name__}: {exc}".strip()
    return text.splitlines()[0][:300] if text else exc.__class__.__name__


class ClipZeroShot(CLIPBackbone):
    """Full CLIP (image + text towers) from ``backbones.clip``; see the module docstring."""

    MODEL_CLASS = "CLIPModel"

    def __init__(self, source: str | None, device: str = "cpu", allow_pickle: bool = False, **options: Any):
        options = {k: o.default for k, o in self.OPTIONS.items()} | options
        super().__init__(source, device=device, allow_pickle=allow_pickle, **options)
        self._tokenizer = None
        self._text_memo: dict[str, np.ndarray] = {}

    # -- availability: a full CLIP checkpoint with a tokenizer -----------------------------------------
    def _full_hint(self) -> str:
        hub = self.source if (self.explicit_source and _HUB_ID.match(self.source)) else "openai/clip-vit-base-patch32"
        return (
            "zero-shot classification needs a full CLIP checkpoint (image and text towers plus its tokenizer): "
            "set backbones.clip in the zoo file to a folder saved with CLIPModel.save_pretrained and the "
            f"tokenizer's save_pretrained, or to a hub id downloaded into the local Hugging Face cache "
            f"(`huggingface-cli download {hub}`)"
        )

    def availability(self) -> tuple[bool, str]:
        ok, why = super().availability()
        if not ok:
            return ok, why
        folder = Path(self._resolve()[0])
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            return False, f"backbones.clip: cannot read {folder / 'config.json'} ({_one_line(exc)})"
        if cfg.get("model_type") != "clip" or "text_config" not in cfg:
            return False, (
                f"backbones.clip: {self.source} is not a full CLIP model (model_type "
                f"{cfg.get('model_type')!r}); {self._full_hint()}"
            )
        names = set(os.listdir(folder))
        if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
            return False, (f"backbones.clip: {self.source} has no tokenizer files (tokenizer.json or vocab.json + merges.txt); "
                           f"{self._full_hint()}")
        return True, ""

    def _load(self):
        try:
            return super()._load()
        except MissingDependency as exc:
            raise MissingDependency(str(exc).splitlines()[0][:400]) from None

    def _preprocessing(self, folder: str, config) -> dict[str, Any]:
        # a CLIPModel config keeps image_size in its vision sub-config
        return super()._preprocessing(folder, getattr(config, "vision_config", config))

    def _forward(self, model, x):
        out = model.get_image_features(pixel_values=x)
        return out if hasattr(out, "shape") else out.pooler_output

    # -- text ------------------------------------------------------------------------------------------
    def tokenizer(self):
        if self._tokenizer is None:
            self.require()
            from transformers import AutoTokenizer

            folder = self._resolve()[0]
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure: the folder's tokenizer is unusable
                raise MissingDependency(f"backbones.clip: cannot load the tokenizer of {self.source} ({_one_line(exc)}); "
                                        f"{self._full_hint()}") from None
        return self._tokenizer

    def text_embed(self, texts: Sequence[str]) -> np.ndarray:
        """(k, d) text embeddings (CLIP's projected text features, not normalised)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._text_memo]
        if todo:
            torch = _torch()
            model = self._load()
            tok = self.tokenizer()
            max_len = int(getattr(model.config.text_config, "max_position_embeddings", 77))
            batch = tok(list(todo), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                out = model.get_text_features(**batch)
            feats = (out if hasattr(out, "shape") else out.pooler_output).float().cpu().numpy()
            for t, f in zip(todo, feats):
                self._text_memo[t] = f
        return np.stack([self._text_memo[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature exp(logit_scale) (100 for the OpenAI checkpoints)."""
        model = self._load()
        return float(model.logit_scale.detach().exp().cpu())

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp["model_class"] = self.MODEL_CLASS
        return fp

    def probabilities(self, images_or_embeddings: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """(n, k) zero-shot probabilities of image embeddings among ``labels``."""
        return zero_shot_probabilities(images_or_embeddings, self.text_embed(list(labels)), self.logit_scale)


def load_zero_shot(backbones: dict[str, str], device: str = "cpu", allow_pickle: bool = False, where: str | None = None) -> ClipZeroShot:
    """A ready :class:`ClipZeroShot` for ``backbones['clip']`` (default openai/clip-vit-base-patch32 from
    the local cache), or a one-line CopyscopeError naming the key to set and what to download."""
    zs = ClipZeroShot(backbones.get("clip"), device=device, allow_pickle=allow_pickle)
    ok, why = zs.availability()
    if not ok:
        raise MissingDependency(why, where=where)
    try:
        zs._load()
        zs.tokenizer()
    except CopyscopeError as exc:
        raise MissingDependency(str(exc), where=where) from None
    return zs


def save_tiny_clip(folder: str | Path, seed: int = 0, image_size: int = 32, projection_dim: int = 16) -> Path:
    """Write a random-weight full CLIP (CLIPModel + the tiny hand-made tokenizer of copyscope.demo.tiny
    + an image processor config) to ``folder``: an offline stand-in for ``backbones.clip`` in tests
    and demos. Its text vocabulary matches the tiny SD pipelines'."""
    import torch
    import transformers

    from ..demo.tiny import tiny_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(folder)
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=len(tok), max_position_embeddings=77, projection_dim=projection_dim,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8, projection_dim=projection_dim),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    transformers.CLIPModel(cfg).eval().save_pretrained(folder, safe_serialization=True)
    processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(folder)
    return folder
