"""The memory estimate's nominal sizes of the new families (copyscope.families.base.Family.nominal): the denoisers
and VAEs are the parameter counts of diffusers' default configs (which are the reference checkpoints' architectures:
20B Qwen-Image, 6B Z-Image, 8.9B Chroma, 1.6B Sana, 32B Flux.2, 2.6B Lumina 2, 14B Wan2.1), recounted here on the meta device."""

from __future__ import annotations

import pytest
import torch

from copyscope.families import FAMILIES

COUNTED = {  # family -> {component: diffusers class whose default config was counted}
    "qwenimage": {"denoiser": "QwenImageTransformer2DModel", "vae": "AutoencoderKLQwenImage"},
    "zimage": {"denoiser": "ZImageTransformer2DModel"},
    "chroma": {"denoiser": "ChromaTransformer2DModel"},
    "sana": {"denoiser": "SanaTransformer2DModel", "vae": "AutoencoderDC"},
    "flux2": {"denoiser": "Flux2Transformer2DModel", "vae": "AutoencoderKLFlux2"},
    "lumina2": {"denoiser": "Lumina2Transformer2DModel"},
    "wan": {"denoiser": "WanTransformer3DModel", "vae": "AutoencoderKLWan"},
}


@pytest.mark.parametrize("family", sorted(COUNTED))
def test_nominal_sizes_are_the_default_configs_counts(family):
    import diffusers

    _, sizes = FAMILIES[family].nominal
    for component, cls in COUNTED[family].items():
        with torch.device("meta"):
            model = getattr(diffusers, cls)()
        counted = sum(p.numel() for p in model.parameters())
        assert sizes[component] == pytest.approx(counted, rel=1e-4), (family, component, counted)


def test_every_family_has_nominal_sizes_with_its_components():
    for fam in FAMILIES.values():
        assert fam.nominal is not None, fam.name
        name, sizes = fam.nominal
        assert name and "denoiser" in sizes and "vae" in sizes and all(v > 1e6 for v in sizes.values()), fam.name
