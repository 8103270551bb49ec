"""Images per second of the audit against the bare diffusers pipeline, SD1.5-, SDXL- or Flux.1-sized, on a GPU.

    python bench/bench_gpu_sd15.py [--family sd15|sdxl|flux] [--steps 30] [--seeds 4] [--prompts 2] [--batch 4]
                                   [--loras 2] [--controlnet/--no-controlnet] [--compile] [--repeats 2]
    python bench/bench_gpu_sd15.py --smoke [--family ...]   # CPU, narrow/tiny models, 2 steps: checks the code paths

``--family sdxl`` builds SDXL-base-sized random models (UNet 2.6B, CLIP-L + CLIP-G text encoders, 1024 px
by default, fp16); ``--family flux`` Flux.1-dev-sized ones (transformer 19 + 38 blocks, T5-XXL-sized
encoder, 1024 px by default, bf16), built on the GPU. With ``--smoke`` they are the tiny random pipelines
of copyscope.demo.tiny_families (32 px).

No hub access needed: every model is built here from configs with random weights (the same cost
per step as real weights): a UNet2DConditionModel with Stable Diffusion 1.5's configuration
(written out below), an AutoencoderKL with SD's VAE configuration, a CLIPTextModel with
clip-vit-large-patch14's text configuration (768-d, 12 layers), the hand-made tokenizer of
copyscope.demo.tiny, random LoRAs (rank 8 on the UNet's attention projections) and a ControlNet
derived from the UNet. They are saved as a diffusers folder / safetensors (fp16) under a
temporary folder and used through a zoo file, 512x512, fp16, DDIM.

Measured in one run, alternating after a warm-up (bench_audit_overhead.py explains both sides):
bare diffusers loop (load once, set_adapters per coalition) vs ``audit_zoo`` on a cold cache
(scoring with cheap metrics included); images/s of each and the ratio; the time to load the
pipeline with its LoRAs and ControlNet from disk (what a reload-per-coalition script pays per
coalition) against the adapter switch. With ``--compile`` both sides torch.compile the UNet
(``generation.compile: true``): the first coalition of each adapter set pays a compilation.

Random weights in fp16 may produce NaN/black images: the timings do not depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit_overhead import BarePipelines, bare_run, cold_copy, machine, planned, same_pixels  # noqa: E402

# Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5) configurations, written out.
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
CLIP_L_TEXT = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    vocab_size=49408,
)
SD15_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    skip_prk_steps=True,
)


# --smoke only: the same architecture classes, narrow (checks the script's code paths on a CPU).
SMOKE = {
    "unet": dict(block_out_channels=(32, 64, 64, 64), cross_attention_dim=64),
    "vae": dict(block_out_channels=(32, 32, 64, 64)),
    "text": dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2, projection_dim=64),
}


def build_models(folder: Path, n_loras: int, controlnet: bool, dtype, smoke: bool = False) -> dict:
    """Random-weight SD1.5-sized pipeline, LoRAs and ControlNet, saved under ``folder``."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from copyscope.demo.tiny import control_image, tiny_lora, tiny_tokenizer, write_tokenizer_files

    torch.manual_seed(0)
    tok = tiny_tokenizer(folder / "tok")
    unet = UNet2DConditionModel(**{**SD15_UNET, **(SMOKE["unet"] if smoke else {})})
    vae = AutoencoderKL(**{**SD15_VAE, **(SMOKE["vae"] if smoke else {})})
    te = CLIPTextModel(CLIPTextConfig(**{**CLIP_L_TEXT, **(SMOKE["text"] if smoke else {})}, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=te.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=PNDMScheduler.from_config(SD15_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    n_params = sum(p.numel() for m in (unet, vae, te) for p in m.parameters())
    pipe.to(dtype=dtype)
    paths = {"base": folder / "base", "loras": [], "controlnet": None, "control": None, "params": n_params}
    pipe.save_pretrained(str(paths["base"]), safe_serialization=True)
    write_tokenizer_files(paths["base"] / "tokenizer")
    for i in range(n_loras):
        paths["loras"].append(tiny_lora(pipe, folder / "loras" / f"lora{i}.safetensors", seed=i, rank=8, scale=0.1))
    if controlnet:
        cn = ControlNetModel.from_unet(unet.float())
        cn.to(dtype=dtype).save_pretrained(str(folder / "controlnet"), safe_serialization=True)
        paths["controlnet"] = folder / "controlnet"
        control_image(512, 0).save(folder / "control.png")
        paths["control"] = folder / "control.png"
        del cn
    del pipe, unet, vae, te
    return paths


# SDXL base 1.0 and Flux.1-dev configurations, written out (random weights of the real sizes).
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    transformer_layers_per_block=(1, 2, 10), projection_class_embeddings_input_dim=2816, cross_attention_dim=2048,
)
CLIP_G_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                   max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1280)
FLUX_DEV_TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                            guidance_embeds=True, axes_dims_rope=(16, 56, 56))
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=32)
FLUX_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=16, norm_num_groups=32, sample_size=1024, use_quant_conv=False,
                use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)


def _full_size_family_pipeline(family: str, folder: Path, device: str, dtype):
    """SDXL- or Flux.1-dev-sized random-weight pipeline, built on ``device`` (CPU init of 12B
    parameters would take many minutes)."""
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel, StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from copyscope.demo.tiny import tiny_tokenizer
    from copyscope.demo.tiny_families import tiny_t5_tokenizer

    tok = tiny_tokenizer(folder / "tok")
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        clip_l = CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **ids)).to(dtype).eval()
        if family == "sdxl":
            clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**{**CLIP_G_TEXT, "vocab_size": 49408}, **ids)).to(dtype).eval()
            unet = UNet2DConditionModel(**SDXL_UNET).to(dtype).eval()
            vae = AutoencoderKL(**{**SD15_VAE, "sample_size": 1024, "scaling_factor": 0.13025}).to(dtype).eval()
            sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           steps_offset=1, timestep_spacing="leading")
            return StableDiffusionXLPipeline(vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=tok,
                                             tokenizer_2=tok, unet=unet, scheduler=sched, add_watermarker=False)
        t5_tok = tiny_t5_tokenizer(folder / "t5tok")
        t5 = T5EncoderModel(T5Config(vocab_size=32128, pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id,
                                     decoder_start_token_id=0, **T5_XXL)).to(dtype).eval()
        transformer = FluxTransformer2DModel(**FLUX_DEV_TRANSFORMER).to(dtype).eval()
        vae = AutoencoderKL(**FLUX_VAE).to(dtype).eval()
        sched = FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096,
                                                max_shift=1.15, shift=3.0, use_dynamic_shifting=True)
        return FluxPipeline(scheduler=sched, vae=vae, text_encoder=clip_l, tokenizer=tok, text_encoder_2=t5,
                            tokenizer_2=t5_tok, transformer=transformer)


def build_family_models(folder: Path, family: str, n_loras: int, controlnet: bool, dtype, device: str,
                        smoke: bool = False) -> dict:
    """SDXL / Flux.1 random-weight pipeline, LoRAs and ControlNet saved under ``folder`` (tiny with ``smoke``)."""
    from copyscope.demo.tiny import control_image, write_tokenizer_files
    from copyscope.demo.tiny_families import save_tiny_family_zoo, tiny_family_controlnet, tiny_family_lora

    if smoke:
        import math

        from copyscope.modelfiles.formats import safetensors_header

        paths = save_tiny_family_zoo(folder, family, n_loras=n_loras, controlnet=controlnet)
        paths["params"] = sum(math.prod(t["shape"]) for f in paths["base"].rglob("*.safetensors")
                              for t in safetensors_header(f).values())
        return paths
    pipe = _full_size_family_pipeline(family, folder, device, dtype)
    n_params = sum(p.numel() for m in pipe.components.values() if hasattr(m, "parameters") for p in m.parameters())
    paths = {"base": folder / "base", "loras": [], "controlnet": None, "control": None, "params": n_params}
    pipe.save_pretrained(str(paths["base"]), safe_serialization=True)
    for sub in ("tokenizer", "tokenizer_2"):
        if type(getattr(pipe, sub)).__name__.startswith("CLIP"):
            write_tokenizer_files(paths["base"] / sub)
    for i in range(n_loras):
        paths["loras"].append(tiny_family_lora(family, pipe, folder / "loras" / f"lora{i}.safetensors", seed=i, rank=8, scale=0.1))
    if controlnet:
        if family == "flux":
            from diffusers import FluxControlNetModel

            cn = FluxControlNetModel.from_transformer(pipe.transformer, num_layers=4, num_single_layers=10)
        else:
            cn = tiny_family_controlnet(family, pipe)
        cn.save_pretrained(str(folder / "controlnet"), safe_serialization=True)
        paths["controlnet"] = folder / "controlnet"
        control_image(1024, 0).save(folder / "control.png")
        paths["control"] = folder / "control.png"
        del cn
    del pipe
    return paths


# --memory: generation.memory of the audit side (docs/scale.md "Memory plans"; the bare side loads as it always does)
MEMORY_PLANS = {"none": {}, "offload-model": {"offload": "model"}, "offload-sequential": {"offload": "sequential"},
                "nf4": {"quantize": {"denoiser": "nf4"}}, "nf4-offload": {"offload": "model", "quantize": {"denoiser": "nf4"}}}


def write_zoo(folder: Path, models: dict, args) -> Path:
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.zoo import write_reference_images

    refs = write_reference_images(folder / "refs", n=2, size=args.resolution)
    words = ["a painting of a cat", "a photo of a dog", "a drawing of a house", "a picture of a tree",
             "a photo of a city street", "a watercolor landscape", "a portrait of a woman", "a photo of a rocket launch"]
    data = {
        "name": "bench-sd15",
        "output": str(folder / "out"),
        "bases": [{"name": f"{args.family}-random", "model": str(models["base"])}],
        "controlnets": ([{"name": "depth", "model": str(models["controlnet"]), "conditioning_scale": 1.0,
                          "conditioning": {"image": str(models["control"])}}] if models["controlnet"] else []),
        "loras": [{"name": f"lora{i}", "model": str(p), "weight": 1.0} for i, p in enumerate(models["loras"])],
        "references": [{"name": "work", "paths": [str(refs)]}],
        "prompts": [{"name": f"p{i}", "text": words[i % len(words)]} for i in range(args.prompts)],
        "generation": {"resolution": args.resolution, "steps": args.steps, "guidance": 7.5, "seeds": args.seeds,
                       "batch_size": args.batch, "scheduler": "ddim" if args.family == "sd15" else None,
                       "dtype": args.dtype, "device": args.device, "compile": bool(args.compile),
                       "flux": {"max_sequence_length": 16 if args.smoke else 512},
                       **({"memory": MEMORY_PLANS[args.memory]} if args.memory != "none" else {})},
        "metrics": args.metrics,
        "estimator": {"bootstrap": 200},
    }
    path = folder / "zoo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=["sd15", "sdxl", "flux"], default="sd15")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--loras", type=int, default=2)
    ap.add_argument("--controlnet", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=None, help="default 512 (sd15) or 1024 (sdxl, flux)")
    ap.add_argument("--dtype", default=None, help="default float16 (sd15, sdxl) or bfloat16 (flux)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--metrics", nargs="+", default=["ssim", "dhash", "histogram"])
    ap.add_argument("--workdir", default=None, help="where to write the random models (default: a temp folder)")
    ap.add_argument("--memory", choices=sorted(MEMORY_PLANS), default="none", help="the audit's memory plan")
    ap.add_argument("--json", default=None, help="append one JSON line with this run's numbers to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="CPU check of the code paths: narrow models (not SD1.5-sized), 64 px, 2 steps, 1 LoRA, 1 repeat")
    args = ap.parse_args()
    args.resolution = args.resolution or (512 if args.family == "sd15" else 1024)
    args.dtype = args.dtype or ("bfloat16" if args.family == "flux" else "float16")
    if args.smoke:
        args.device, args.dtype, args.steps = "cpu", "float32", 2
        args.resolution = 64 if args.family == "sd15" else 32
        args.seeds, args.prompts, args.batch, args.loras, args.repeats = 1, 2, 2, 1, 1

    import torch

    if args.smoke:
        torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark is for a GPU machine (use --smoke to check it on CPU)")
    from copyscope.audit import audit_zoo
    from copyscope.generate import CoalitionEngine
    from copyscope.generate.engine import _quiet_diffusers

    _quiet_diffusers()
    scratch = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-sd15-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(args.dtype, torch.float32)
        if args.family == "sd15":
            models = build_models(scratch / "models", args.loras, args.controlnet, dtype, smoke=args.smoke)
        else:
            models = build_family_models(scratch / "models", args.family, args.loras, args.controlnet, dtype,
                                         args.device, smoke=args.smoke)
        print(f"machine: {machine()}")
        size = {"sd15": "SD1.5", "sdxl": "SDXL-base", "flux": "Flux.1-dev"}[args.family] + "-sized"
        print(f"built random {'NARROW/TINY (smoke)' if args.smoke else size} models "
              f"({models['params'] / 1e6:.1f}M params in denoiser+VAE+text encoders) "
              f"in {time.perf_counter() - t0:.1f} s")
        zoo = write_zoo(scratch, models, args)
        prep, games = planned(zoo)
        n_coal = sum(len(c) for _, c in games)
        n_images = n_coal * len(prep.plan.items)
        print(f"{n_coal} coalition(s) x {len(prep.plan.items)} image(s) = {n_images} images, {args.resolution}px, "
              f"{args.steps} steps, batch {args.batch}, {args.dtype}, compile={args.compile}, metrics {args.metrics}")

        # load cost (a reload-per-coalition script pays it for every coalition) vs an adapter switch
        sync()
        t = time.perf_counter()
        bare = BarePipelines(prep, games[0][0])
        sync()
        load_s = time.perf_counter() - t
        bare.generate(games[0][1][-1], prep.plan.items[: args.batch])  # warm-up (and compile)
        sync()
        del bare
        engine = CoalitionEngine(prep.zoo, games[0][0])
        engine.load()
        for c in games[0][1]:
            engine.activate(c)
        switch_ms = 1000 * engine.switch_seconds / max(engine.switches, 1)
        engine.release()
        del engine
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"load pipeline + {args.loras} LoRA(s){' + ControlNet' if args.controlnet else ''} from disk: {load_s:.2f} s; "
              f"adapter switch: {switch_ms:.2f} ms")

        from copyscope.plan.memory import GIB, plans_that_fit

        plan_label = {"none": "none"}.get(args.memory, MEMORY_PLANS[args.memory].get("offload", "none"))
        estimate = next(r["gib"] for r in plans_that_fit(prep.zoo, games[0][0], 1e15)
                        if r["offload"] == plan_label and r["quantize"] == "as configured")
        tb = ta = 0.0
        peak = None
        for r in range(args.repeats):
            sync()
            t_bare, bare_out = bare_run(prep, games)
            sync()
            out_dir = scratch / f"audit{r}"
            copy = cold_copy(zoo, out_dir)
            try:
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                report = audit_zoo(copy, out_dir)
                sync()
                t_audit = time.perf_counter() - t
                if torch.cuda.is_available():
                    peak = max(peak or 0.0, torch.cuda.max_memory_allocated() / GIB)
            finally:
                copy.unlink(missing_ok=True)
            same = same_pixels(report, Path(report.get("cache_dir") or out_dir / "cache"), bare_out["images"], games)
            tb += t_bare
            ta += t_audit
            print(f"repeat {r + 1}: bare {n_images / t_bare:.3f} images/s ({t_bare:.1f} s), audit {n_images / t_audit:.3f} "
                  f"images/s ({t_audit:.1f} s, {report['generation']['seconds']:.1f} s in generate()), "
                  f"audit/bare time {t_audit / t_bare:.3f}, same pixels: {same}", flush=True)
            shutil.rmtree(out_dir, ignore_errors=True)
        print(f"totals: bare {n_images * args.repeats / tb:.3f} images/s, audit {n_images * args.repeats / ta:.3f} images/s, "
              f"audit/bare {ta / tb:.3f}; reload per coalition would add {load_s:.2f} s x {n_coal} coalitions "
              f"= {load_s * n_coal:.1f} s per run")
        print(f"memory plan {args.memory}: estimated peak {estimate:.2f} GiB (copyscope plan --gpu-memory), measured "
              + (f"{peak:.2f} GiB (torch.cuda.max_memory_allocated)" if peak is not None else "n/a (no CUDA)"))
        if args.json:
            import json

            row = {"family": args.family, "memory": args.memory, "resolution": args.resolution, "dtype": args.dtype,
                   "steps": args.steps, "images": n_images * args.repeats, "bare_images_per_s": n_images * args.repeats / tb,
                   "audit_images_per_s": n_images * args.repeats / ta, "audit_over_bare": ta / tb, "load_s": load_s,
                   "switch_ms": switch_ms, "peak_gib": peak, "estimated_gib": estimate, "machine": machine()}
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    finally:
        if not args.workdir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
