"""Textual-inversion embeddings as players: each embedding is added to the tokenizer and text
encoder once (diffusers' ``load_textual_inversion``); when the player is active its token joins
the prompt (at its ``{name}`` placeholder, else appended like a prompt fragment), when inactive
the token is absent and the embedding has no effect. SD1.x/2.x files hold one tensor; SDXL files
hold ``clip_l`` and ``clip_g`` tensors for the two text encoders."""

from __future__ import annotations

from pydantic import Field

from ..config.base import NamedSpec
from .kind import PlayerKind, register

SUPPORTED = ("sd", "sdxl")


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
        return frozenset(SUPPORTED)

    @classmethod
    def family_mismatch(cls, spec, base, fam, fits):
        return (f"textual inversion {spec.name!r}: base {base!r} is family {fam}; textual-inversion players "
                f"work on {' and '.join(SUPPORTED)} bases",)

    def identity(self) -> dict:
        return {**self.source.identity(), "weight_name": self.spec.weight_name}

    def key_entry(self, item) -> dict:
        return {"id": self.engine.identities()["textual_inversions"][self.name], "token": self.spec.token}

    def load(self, pipe) -> None:
        from ..generation.sources import hub_error

        eng, src, token = self.engine, self.source, self.spec.token
        try:
            if src.local is not None and src.local.is_file():
                from safetensors.torch import load_file  # never a pickle loader for a local file

                state = load_file(str(src.local))
            else:
                from huggingface_hub import hf_hub_download
                from safetensors.torch import load_file

                folder = src.local
                path = (folder / self.spec.weight_name) if folder is not None else hf_hub_download(
                    src.value, self.spec.weight_name or "learned_embeds.safetensors", revision=self.spec.revision)
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
