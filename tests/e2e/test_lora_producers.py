"""LoRA files made by independent producers, inside the test (no copyscope converter involved), each
audited through the CLI on the shipped tiny base (demo_zoo/base) with ``seeds: 1`` and compared with
what the producing tool itself means by the file:

* lycoris-lora 4.1.3 (the library kohya's trainers use): its kohya-named network writers for LoRA,
  LoCon, LoHa, LoKr, full (diff), IA3, diag-OFT, BOFT, GLoRA, DyLoRA and LoRA with DoRA; the
  producer's images come from lycoris' own merge of the saved file into the base (``merge_to``).
* peft + diffusers: ``get_peft_model_state_dict`` + ``StableDiffusionPipeline.save_lora_weights`` with
  ``lora_alpha`` != rank (kept in the safetensors metadata), and with ``use_dora=True``; the producer's
  images come from peft's own merge of the adapters (``merge``).

The merged weights are saved as a base folder and audited without the LoRA: the same generation code
on both sides, so any difference is the loading. Every file either gives the producer's pixels (within
one grey level: merged and unmerged float sums round apart) or is refused by ``copyscope validate``
with one line naming ``loras[0].model``, the layout and the reason. ``test_refusals_are_needed`` checks
each refusal against diffusers itself, so the table in docs/zoo.md ("LoRA formats") stays measured:
``python -m pytest tests/e2e/test_lora_producers.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from copyscope.cli import app

from helpers.cli_errors import assert_one_line_error
from helpers.producers import PROMPT, audit_images, perturb, producer_zoo, runner
from helpers.paths import REPO

lycoris = pytest.importorskip("lycoris", reason="lycoris-lora is a test dependency (pip install -e .[test])")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]
BASE = REPO / "demo_zoo" / "base"
PRESET = """enable_conv = true
unet_target_module = ["Transformer2DModel", "ResnetBlock2D", "Downsample2D", "Upsample2D"]
unet_target_name = ["conv_in", "conv_out"]
text_encoder_target_module = ["CLIPAttention", "CLIPMLP"]
"""

# name -> (lycoris create_network keywords, expected: "exact" or the refusal's layout title)
LYCORIS = {
    "lora": ({"algo": "lora"}, "exact"),
    "locon": ({"algo": "locon", "conv_dim": 2, "conv_alpha": 1}, "exact"),
    "loha": ({"algo": "loha"}, "LyCORIS LoHa"),
    "lokr": ({"algo": "lokr"}, "LyCORIS LoKr"),
    "full": ({"algo": "full"}, r"LyCORIS full \(diff\)"),
    "ia3": ({"algo": "ia3"}, "LyCORIS IA3"),
    "diag-oft": ({"algo": "diag-oft"}, "LyCORIS diag-OFT"),
    "boft": ({"algo": "boft"}, "LyCORIS BOFT"),
    "glora": ({"algo": "glora"}, "LyCORIS GLoRA"),
    "dylora": ({"algo": "dylora"}, r"kohya/LyCORIS DyLoRA"),
    "dora": ({"algo": "lora", "dora_wd": True}, r"DoRA \(kohya/LyCORIS dora_scale\)"),
}
# name -> (lora_alpha, use_dora, text encoder too, expected)
PEFT = {
    "peft-alpha": (8, False, True, "exact"),
    "peft-dora-unet": (8, True, False, "exact"),
    "peft-dora-te": (8, True, True, "peft DoRA on the text encoder"),
}


def _pipe():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(BASE), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _lycoris_file(root: Path, name: str, kwargs: dict) -> tuple[Path, Path]:
    """(the LoRA file lycoris writes, a base folder with lycoris' own merge of that file)."""
    from lycoris.kohya import create_network
    from lycoris.logging import logger

    logger.setLevel(logging.ERROR)
    (root / "preset.toml").write_text(PRESET)
    pipe = _pipe()
    torch.manual_seed(0)
    net = create_network(1.0, 4, 2, pipe.vae, pipe.text_encoder, pipe.unet, preset=str(root / "preset.toml"), **kwargs)
    net.apply_to(pipe.text_encoder, pipe.unet, True, True)
    perturb(list(net.parameters()), seed=len(name))
    out = root / f"{name}.safetensors"
    net.save_weights(str(out), None, {})
    for module in net.text_encoder_loras + net.unet_loras:
        module.restore()  # the modules' own forward back, then lycoris merges the deltas into their weights
    from safetensors.torch import load_file

    net.merge_to(pipe.text_encoder, pipe.unet, load_file(str(out)), torch.float32, "cpu")
    pipe.save_pretrained(str(root / f"{name}-merged"))
    return out, root / f"{name}-merged"


def _peft_file(root: Path, name: str, alpha: int, dora: bool, te: bool) -> tuple[Path, Path]:
    """(diffusers' save_lora_weights of a peft LoRA, a base folder with peft's own merge of it)."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import get_peft_model_state_dict

    pipe = _pipe()
    torch.manual_seed(1)
    ucfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=["to_q", "to_k", "to_v", "to_out.0"], use_dora=dora)
    pipe.unet.add_adapter(ucfg)
    tcfg = LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], use_dora=dora)
    if te:
        inject_adapter_in_model(tcfg, pipe.text_encoder)
    lora_params = [p for c in (pipe.unet, pipe.text_encoder) for n, p in c.named_parameters() if "lora_" in n]
    perturb(lora_params, seed=len(name))
    out = root / name
    StableDiffusionPipeline.save_lora_weights(
        str(out),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)) if te else None,
        unet_lora_adapter_metadata=ucfg.to_dict(),
        text_encoder_lora_adapter_metadata=tcfg.to_dict() if te else None,
    )
    merged = _pipe()
    for comp in ("unet", "text_encoder"):
        for mod_name, module in getattr(pipe, comp).named_modules():
            if isinstance(module, BaseTunerLayer):
                module.merge()
                target = getattr(merged, comp).get_submodule(mod_name)
                target.weight.data.copy_(module.get_base_layer().weight.data)
    merged.save_pretrained(str(root / f"{name}-merged"))
    return out / "pytorch_lora_weights.safetensors", root / f"{name}-merged"


def _zoo(tmp: Path, base: Path, lora: Path | None) -> Path:
    return producer_zoo(tmp, "tiny-sd", base, lora, {"resolution": 32, "steps": 2, "guidance": 3.0, "seeds": 1, "batch_size": 1,
                                                      "scheduler": "ddim", "dtype": "float32", "device": "cpu"})


@pytest.fixture(scope="module")
def produced(tmp_path_factory) -> dict:
    """name -> (LoRA file, merged base folder, expected outcome)."""
    root = tmp_path_factory.mktemp("producers")
    out = {}
    for name, (kwargs, expected) in LYCORIS.items():
        out[name] = (*_lycoris_file(root, name, kwargs), expected)
    for name, (alpha, dora, te, expected) in PEFT.items():
        out[name] = (*_peft_file(root, name, alpha, dora, te), expected)
    return out


ALL = list(LYCORIS) + list(PEFT)


@pytest.mark.parametrize("name", ALL)
def test_producer_file_is_exact_or_refused_at_validate(produced, tmp_path, name):
    lora, merged, expected = produced[name]
    zoo = _zoo(tmp_path / "with-lora", BASE, lora)
    if expected != "exact":
        assert_one_line_error(
            runner.invoke(app, ["validate", str(zoo)]),
            rf"zoo\.yaml:\d+: loras\[0\]\.model: LoRA 'style': {expected}.* is not supported by diffusers \d[\w.]* for sd",
        )
        return
    assert runner.invoke(app, ["validate", str(zoo)]).exit_code == 0
    images = audit_images(zoo)
    audited, base_image = images["style"], images[""]
    producer = audit_images(_zoo(tmp_path / "merged", merged, None))["tiny-sd"]
    # the LoRA matters (else equality proves nothing), and copyscope gives the producer's pixels
    assert np.abs(producer - base_image).max() >= 8, name
    assert np.abs(audited - producer).max() <= 1, (name, np.abs(audited - producer).max())


def _diffusers_result(lora: Path):
    """What diffusers does with the file loaded by path: ('raises', message), ('warns', message) or ('image', array)."""
    from diffusers.utils import logging as dlogging

    pipe = _pipe()
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    for name in ("diffusers", "transformers"):
        logging.getLogger(name).addHandler(handler)
    level = dlogging.get_verbosity()
    dlogging.set_verbosity(dlogging.CRITICAL)  # the failure logs of the refused files are long
    try:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
    except Exception as exc:  # noqa: BLE001 - whatever diffusers raises, the file is not loadable
        return "raises", str(exc)
    finally:
        dlogging.set_verbosity(level)
        for name in ("diffusers", "transformers"):
            logging.getLogger(name).removeHandler(handler)
    image = pipe(PROMPT, num_inference_steps=2, guidance_scale=3.0, height=32, width=32, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images[0]
    return ("warns", records[0]) if records else ("image", image)


@pytest.mark.parametrize("name", [n for n in ALL if (LYCORIS.get(n) or PEFT.get(n))[-1] != "exact"])
def test_refusals_are_needed(produced, name):
    """Each refused file, loaded by diffusers itself: it raises, or warns that it drops tensors, or gives
    images other than the producer's. When a diffusers release loads one exactly, this fails: move the
    layout to the supported column (copyscope.modelfiles.lora_layouts.LORA_LAYOUTS) and docs/zoo.md's table."""
    lora, merged, _ = produced[name]
    what, detail = _diffusers_result(lora)
    if what == "image":
        pipe = _pipe()
        from diffusers import StableDiffusionPipeline

        producer = StableDiffusionPipeline.from_pretrained(str(merged), safety_checker=None, requires_safety_checker=False)
        producer.set_progress_bar_config(disable=True)
        ref = producer(PROMPT, num_inference_steps=2, guidance_scale=3.0, height=32, width=32, output_type="np",
                       generator=torch.Generator().manual_seed(0)).images[0]
        del pipe
        assert np.abs(ref - detail).max() * 255 > 2, f"diffusers now loads {name} exactly: support it"


@pytest.mark.parametrize("name, said", [
    ("dora", r"diffusers\S* warned while loading it: It seems like you are using a DoRA checkpoint"),
    ("peft-dora-te", r"(transformers\S* warned while loading it: .*(UNEXPECTED|MISSING)|layers are for the text_encoder)"),
])
def test_a_warning_that_a_lora_is_not_applied_is_an_error(produced, tmp_path, monkeypatch, name, said):
    """With the header check bypassed, the load itself must not swallow diffusers' / transformers'
    warning that tensors were dropped: the audit stops with one line instead of scoring the wrong LoRA."""
    from copyscope.players.lora import LoraPlayer

    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # a cold cache: the LoRA must load
    monkeypatch.setattr(LoraPlayer, "check_layout", classmethod(lambda cls, *a: None))
    zoo = _zoo(tmp_path, BASE, produced[name][0])
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]),
                          rf"loras\[0\]\.model: LoRA 'style' is not applied as written: {said}")
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_layer_not_attached_without_any_warning_is_an_error(produced, tmp_path, monkeypatch):
    """The last guard: after loading, every layer the header lists must be an adapter layer of the
    pipeline (here the header is made to list more UNet layers than the file has)."""
    from copyscope.players.lora import LoraPlayer

    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))  # a cold cache: the LoRA must load
    real = LoraPlayer._expected_layers
    monkeypatch.setattr(LoraPlayer, "_expected_layers", lambda self: {**real(self), "unet": real(self)["unet"] + 1})
    zoo = _zoo(tmp_path, BASE, produced["lora"][0])
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]),
                          r"loras\[0\]\.model: LoRA 'style' is not applied as written: (\d+) of its layers are for the unet but "
                          r"diffusers attached \d+")


def test_a_peft_python_warning_of_missing_keys_is_an_error(produced, tmp_path, monkeypatch):
    """peft reports keys it could not load with warnings.warn, not a logger: that channel is judged too."""
    import warnings

    from copyscope.players.lora import LoraPlayer

    monkeypatch.setenv("COPYSCOPE_CACHE", str(tmp_path / "cache"))
    real = LoraPlayer._load_weights

    def load_and_warn(self, pipe):
        real(self, pipe)
        warnings.warn("Found missing adapter keys while loading the checkpoint: ['down_blocks.0.x.lora_A.style.weight']", stacklevel=2)

    monkeypatch.setattr(LoraPlayer, "_load_weights", load_and_warn)
    zoo = _zoo(tmp_path, BASE, produced["lora"][0])
    assert_one_line_error(runner.invoke(app, ["audit", str(zoo)]),
                          r"loras\[0\]\.model: LoRA 'style' is not applied as written: a warning while loading it: Found missing "
                          r"adapter keys")
