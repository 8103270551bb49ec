"""Textual-inversion embeddings as players: each embedding is added to the tokenizer and text
encoder once (diffusers' ``load_textual_inversion``); when the player is active its token joins
the prompt (at its ``{name}`` placeholder, else appended like a prompt fragment), when inactive
the token is absent and the embedding has no effect. SD1.x/2.x files hold one tensor; SDXL files
hold ``clip_l`` and ``clip_g`` tensors for the two text encoders."""

from __future__ import annotations

import json
import re

from pydantic import Field

from ..config.base import NamedSpec
from .kind import PlayerKind, register


def supported() -> tuple[str, ...]:
    """The families whose diffusers pipelines load this kind (their ``textual_inversion`` capability)."""
    from ..families import FAMILIES

    return tuple(name for name, fam in FAMILIES.items() if fam.textual_inversion)


DEFAULT_WEIGHTS = "learned_embeds.safetensors"  # diffusers' name for a textual-inversion file in a folder


class TextualInversionSpec(NamedSpec):
    """A textual-inversion embedding as a player: its token joins the prompt when it is active."""

    model: str = Field(description="local .safetensors embedding file (or hub id with weight_name)")
    token: str | None = Field(None, description="the token that stands for the embedding; default '<name>'")
    weight_name: str | None = None
    revision: str | None = None


@register
class TextualInversionPlayer(PlayerKind):
    kind = "textual_inversion"
    section = "textual_inversions"
    spec_model = TextualInversionSpec
    label = "textual inversion"
    key_group = "textual_inversions"
    switch_cost = "free (the token joins or leaves the prompt)"

    @classmethod
    def fill_defaults(cls, spec) -> None:
        super().fill_defaults(spec)
        spec.token = spec.token or f"<{spec.name}>"

    @classmethod
    def prompt_fragment(cls, spec) -> str:
        return spec.token

    @classmethod
    def families(cls, zoo, spec):
        return frozenset(supported())

    @classmethod
    def family_mismatch(cls, spec, base, fam, fits):
        return (f"textual inversion {spec.name!r}: base {base!r} is family {fam}; textual-inversion players "
                f"work on {' and '.join(supported())} bases",)

    @classmethod
    def check_zoo(cls, zoo, base_families):
        """Before anything loads: each embedding file (one embedding of the text encoder's width) and
        its token (unique, in no prompt and not a word the tokenizer knows: the embedding must be
        active only in the coalitions that hold the player)."""
        super().check_zoo(zoo, base_families)
        tokens: dict[str, str] = {}
        for i, spec in enumerate(cls.specs(zoo)):
            if spec.token in tokens:
                raise zoo.fail(f"textual inversions {tokens[spec.token]!r} and {spec.name!r} both use the token {spec.token!r}; "
                               "expected one token per embedding", cls.section, i, "token")
            tokens[spec.token] = spec.name
            cls._check_token(zoo, i, spec)
            path = cls._local_file(zoo, i, spec)
            if path is not None:
                cls._check_file(zoo, i, spec, path)

    @classmethod
    def _check_token(cls, zoo, i: int, spec) -> None:
        from . import KINDS

        token = spec.token
        texts = [(f"prompt {p.name!r}", t) for p in zoo.spec.prompts for t in (p.text, p.negative) if t]
        for kind in KINDS.values():
            if kind is not cls:
                texts += [(f"{kind.label} {s.name!r}", f) for s in kind.specs(zoo) if (f := kind.prompt_fragment(s))]
        for where, text in texts:
            # {name} placeholders are replaced by the players' text, not read as words
            if token.lower() in re.sub(r"\{[^{}]*\}", " ", text).lower():
                raise zoo.fail(
                    f"token {token!r} occurs in the text of {where} ({text[:80]!r}), so the embedding would be active in "
                    f"every coalition; expected a token that appears in no prompt (e.g. '<{spec.name}>')", cls.section, i, "token",
                )
        for b in zoo.spec.bases:
            vocab = zoo.resolve_path(b.model) / "tokenizer" / "vocab.json" if zoo.is_local(b.model) else None
            if vocab is None or not vocab.is_file():
                continue
            try:
                words = json.loads(vocab.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                continue  # the base's own load reports an unreadable tokenizer
            if isinstance(words, dict) and (token in words or f"{token.lower()}</w>" in words):
                raise zoo.fail(
                    f"token {token!r} is an ordinary word of base {b.name!r}'s tokenizer, so it would not stand for the "
                    f"embedding alone; expected a new token such as '<{spec.name}>'", cls.section, i, "token",
                )

    @classmethod
    def _local_file(cls, zoo, i: int, spec):
        """The embedding file of a local entry (a file, or ``weight_name`` in a folder); None for hub ids."""
        if not zoo.is_local(spec.model):
            return None
        path = zoo.resolve_path(spec.model)
        if path.is_dir():
            if spec.weight_name is None:
                raise zoo.fail(
                    f"{spec.model!r} is a folder; set weight_name to the embedding file in it (e.g. "
                    f"{DEFAULT_WEIGHTS})", cls.section, i, "weight_name",
                )
            path = path / spec.weight_name
            if not path.is_file():
                raise zoo.fail(f"no file {spec.weight_name!r} in {spec.model!r} (looked at {path})", cls.section, i, "weight_name")
        return path if path.suffix == ".safetensors" else None

    @classmethod
    def _check_file(cls, zoo, i: int, spec, path) -> None:
        from ..modelfiles.formats import base_layers, safetensors_header

        try:
            head = safetensors_header(path)
        except (OSError, ValueError) as exc:
            raise zoo.fail(f"{path.name} is not a valid .safetensors file ({exc})", cls.section, i, "model") from None
        if "clip_l" in head:  # SDXL: one embedding per text encoder
            embeddings = {"text_encoder": head["clip_l"], "text_encoder_2": head.get("clip_g")}
        elif "emb_params" in head:
            embeddings = {"text_encoder": head["emb_params"]}
        elif len(head) == 1:
            embeddings = {"text_encoder": next(iter(head.values()))}
        else:
            what = "no tensors" if not head else f"{len(head)} tensors ({', '.join(sorted(head)[:4])})"
            raise zoo.fail(f"{path.name} holds {what}; expected one embedding (a single tensor, emb_params, or clip_l and "
                           "clip_g for SDXL)", cls.section, i, "model")
        for b in zoo.spec.bases:
            base = zoo.resolve_path(b.model) if zoo.is_local(b.model) else None
            try:
                layers = base_layers(base) if base is not None and base.exists() else {}
            except (OSError, ValueError):
                continue  # the base's own checks report an unreadable base
            for comp, info in embeddings.items():
                token_emb = layers.get(comp, {}).get("embeddings.token_embedding")
                shape = (info or {}).get("shape") or []
                if info is None or token_emb is None:
                    continue
                if len(shape) not in (1, 2) or shape[-1] != token_emb[1]:
                    raise zoo.fail(
                        f"{path.name}: its embedding has shape {shape}, but base {b.name!r}'s {comp.replace('_', ' ')} is "
                        f"{token_emb[1]} wide; expected an embedding trained for this base", cls.section, i, "model",
                    )

    def identity(self) -> dict:
        return {**self.source.identity(), "weight_name": self.spec.weight_name}

    def key_entry(self, item) -> dict:
        return {"id": self.engine.identities()["textual_inversions"][self.name], "token": self.spec.token}

    def load(self, pipe) -> None:
        from ..modelfiles.sources import hub_error

        eng, src, token = self.engine, self.source, self.spec.token
        try:
            if src.local is not None and src.local.is_file():
                from safetensors.torch import load_file  # never a pickle loader for a local file

                state = load_file(str(src.local))
            else:
                from huggingface_hub import hf_hub_download
                from safetensors.torch import load_file

                folder = src.local
                path = (folder / (self.spec.weight_name or DEFAULT_WEIGHTS)) if folder is not None else hf_hub_download(
                    src.value, self.spec.weight_name or DEFAULT_WEIGHTS, revision=self.spec.revision)
                state = load_file(str(path))
            if "clip_l" in state:  # SDXL: one embedding per text encoder
                pipe.load_textual_inversion(state["clip_l"], token=token, tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder)
                if "clip_g" in state and getattr(pipe, "text_encoder_2", None) is not None:
                    pipe.load_textual_inversion(state["clip_g"], token=token, tokenizer=pipe.tokenizer_2,
                                                text_encoder=pipe.text_encoder_2)
            else:
                tensor = state["emb_params"] if "emb_params" in state else next(iter(state.values()))
                pipe.load_textual_inversion(tensor.to(eng.dtype), token=token)
        except Exception as exc:  # noqa: BLE001 - hub/safetensors/diffusers raise many kinds; the user needs one line
            if src.local is None:
                raise hub_error(eng.zoo, exc, src, self.loc) from None
            text = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
            raise eng.zoo.fail(f"cannot load textual inversion {self.name!r} ({text})", *self.loc, "model") from None
