"""IP-Adapters as players: an image prompt (the prompt's protected work, or a given image) fed to
the base through diffusers' ``load_ip_adapter``. All IP-Adapters of a zoo load once, together (diffusers
installs them in one call); a coalition sets each one's scale (its ``scale`` when active, 0 when
not), so switching costs milliseconds. While any is loaded every call passes an image per adapter;
an adapter at scale 0 adds exactly nothing (its attention output is multiplied by 0)."""

from __future__ import annotations

from pydantic import Field

from ..common.inputs import image_sha256
from ..config.base import MAX_WEIGHT, Float, NamedSpec
from .kind import PlayerKind, register


def supported() -> tuple[str, ...]:
    """The families whose diffusers pipelines load this kind (their ``ip_adapter`` capability)."""
    from ..families import FAMILIES

    return tuple(name for name, fam in FAMILIES.items() if fam.ip_adapter)


class IPAdapterSpec(NamedSpec):
    """An IP-Adapter as a player: an image prompt (a reference work's image, or a given image) at a scale."""

    model: str = Field(description="hub id or local folder holding the IP-Adapter weights")
    weight_name: str = Field(description="weights file inside 'model' (e.g. ip-adapter_sd15.safetensors)")
    subfolder: str = ""
    image_encoder: str | None = Field(None, description="image encoder folder; default: 'model'/models/image_encoder")
    revision: str | None = None
    scale: Float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT)  # finite, bounded, not a boolean (as ControlNet scales)
    image: str | None = Field(None, description="the image prompt; default: the first image of the prompt's work")


@register
class IPAdapterPlayer(PlayerKind):
    kind = "ip_adapter"
    section = "ip_adapters"
    spec_model = IPAdapterSpec
    label = "IP-Adapter"
    key_group = "ip_adapters"
    switch_cost = "set_ip_adapter_scale: milliseconds, no reload"
    strength_field = "scale"

    @classmethod
    def families(cls, zoo, spec):
        return frozenset(supported())

    @classmethod
    def check_zoo(cls, zoo, base_families):
        super().check_zoo(zoo, base_families)
        works = {r.name for r in zoo.spec.references}
        for i, ip in enumerate(cls.specs(zoo)):
            if ip.image is not None:
                from ..common.inputs import check_image_file

                path = zoo.resolve_path(ip.image)
                # a regular image file within the pixel limit: a FIFO, a folder or a bomb is named as such
                what = check_image_file(path)
                if what is not None:
                    what = f"not found (looked at {path})" if what == "not found" else f"is {what}"
                    raise zoo.fail(f"IP-Adapter image {ip.image!r} {what}", cls.section, i, "image")
            elif len(works) > 1 and any(p.work is None for p in zoo.spec.prompts):
                raise zoo.fail("IP-Adapter without 'image' takes its image prompt from the prompt's work: give "
                               "'image', or a 'work' on every prompt", cls.section, i)

    def identity(self) -> dict:
        ident = {**self.source.identity(), "weight_name": self.spec.weight_name, "subfolder": self.spec.subfolder}
        if self.spec.image_encoder:
            ident["image_encoder"] = self.spec.image_encoder
        return ident

    def image_path(self, item):
        from ..config.zoo import iter_reference_files

        if self.spec.image is not None:
            return self.engine.zoo.resolve_path(self.spec.image)
        eng = self.engine
        if not hasattr(eng, "_reference_files"):
            eng._reference_files = iter_reference_files(eng.zoo)
        work = item.work or next(iter(eng._reference_files))
        return eng._reference_files[work][0]

    def key_entry(self, item) -> dict:
        return {
            "id": self.engine.identities()["ip_adapters"][self.name],
            "scale": self.spec.scale,
            "image_sha256": image_sha256(self.image_path(item)),  # file + EXIF orientation
        }

    @classmethod
    def after_load(cls, engine, players):
        if not players:
            return
        from ..modelfiles.sources import hub_error

        pipe = engine.pipe
        first = players[0]
        encoder = first.spec.image_encoder
        if encoder is not None and getattr(pipe, "image_encoder", None) is None:
            from transformers import CLIPVisionModelWithProjection

            path = engine.zoo.resolve_path(encoder) if engine.zoo.is_local(encoder) else encoder
            pipe.register_modules(image_encoder=CLIPVisionModelWithProjection.from_pretrained(
                str(path), dtype=engine.dtype).to(engine.device))
        try:
            pipe.load_ip_adapter(
                [str(p.source.local) if p.source.local is not None else p.source.value for p in players],
                subfolder=[p.spec.subfolder for p in players],
                weight_name=[p.spec.weight_name for p in players],
                **({"image_encoder_folder": None} if encoder is not None else {}),
            )
        except Exception as exc:  # noqa: BLE001 - diffusers/hub raise many kinds; the user needs one line
            raise hub_error(engine.zoo, exc, first.source, first.loc) from None
        cls.switch(engine, [], players)

    @classmethod
    def switch(cls, engine, active, players):
        if players:
            on = {p.name for p in active}
            scales = [p.spec.scale if p.name in on else 0.0 for p in players]
            engine.pipe.set_ip_adapter_scale(scales if len(scales) > 1 else scales[0])

    @classmethod
    def call_kwargs(cls, engine, active, items, kwargs):
        players = engine.players.get(cls.kind, [])
        if not players:
            return
        from ..modelfiles.sources import load_control

        h, w = engine.gen.size
        per_adapter = [[load_control(p.image_path(i), w, h) for i in items] for p in players]
        # one list per adapter, holding one image per batch item
        kwargs["ip_adapter_image"] = per_adapter
