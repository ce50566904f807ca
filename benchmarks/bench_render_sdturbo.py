"""Render one 512x512 frame with an SD-Turbo-size model (random weights, the same compute).

The architecture is Stable Diffusion 2.1's, which SD-Turbo distils: a
UNet2DConditionModel with blocks (320, 640, 1280, 1280), 1024-dim cross
attention over 77 tokens, on 4x64x64 latents; the SD VAE decoder; TAESD's
AutoencoderTiny as the tiny decoder; Euler with trailing timesteps. Cases,
all in one process: steps 1/2/4 with the VAE and with the tiny decoder, the
renderer with the torch eager executor, (``--compile``) the torch.compile
executor (CUDA graphs on a GPU; the compile + warm-up time is reported too)
and (``--onnx``) the ONNX Runtime executor, and the stock diffusers
``StableDiffusionImg2ImgPipeline`` call as the baseline. ``--channels-last``
stores UNet and decoder weights NHWC for every case, the stock pipeline's
included (they share the modules); SDPA attention (``AttnProcessor2_0``) is
set explicitly either way.

    python -m benchmarks.bench_render_sdturbo [--device cuda --dtype float16] [--compile]
                                              [--channels-last] [--onnx] [--json OUT]

On a CPU each frame takes seconds (about 5 s per UNet step on 2 cores), so
repeats are few there; on a GPU use ``--device cuda --dtype float16``.
benchmarks/gpu_suite.sh runs every GPU case in one go.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.render import (
    Img2ImgRenderer,
    RenderModel,
    TorchCompiledExecutor,
    TorchEagerExecutor,
)
from rt_recon.render.model import prepare_for_inference
from rt_recon.render.stock import stock_pipeline


def build_sdturbo_size(device: str, dtype: torch.dtype, seed: int = 0) -> RenderModel:
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        EulerDiscreteScheduler,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,  # SD-Turbo's scheduler_config.json (unused by trailing spacing)
    )
    model = RenderModel(
        path=Path("sd-turbo-size (random weights)"),
        unet=unet.to(device, dtype).eval(),
        vae=vae.to(device, dtype).eval(),
        scheduler=scheduler,
        device=torch.device(device),
        dtype=dtype,
        fingerprint=f"sdturbo-size-random-{seed}",
        latent_shape=(4, 64, 64),
        cond_shape=(77, 1024),
        image_size=512,
        tiny_decoder=AutoencoderTiny().to(device, dtype).eval(),
    )
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return out


def run(
    device: str = "cpu",
    dtype: str = "float32",
    repeats: int = 3,
    warmup: int = 1,
    steps_list=(1, 2, 4),
    onnx: bool = False,
    compile: bool = False,
    channels_last: bool = False,
) -> dict:
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        dtype
    ]
    model = build_sdturbo_size(device, torch_dtype)
    prepare_for_inference(model, channels_last)
    rng = np.random.default_rng(0)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    z_t = torch.from_numpy(z)[None].to(device, torch_dtype)
    c_t = torch.from_numpy(c)[None].to(device, torch_dtype)
    dev = model.device
    rows = []
    compile_s: dict[str, float] = {}
    tiny = model.tiny_decoder
    for steps in steps_list:
        pipe = stock_pipeline(model)

        def stock(pipe=pipe, steps=steps) -> None:
            pipe(
                prompt_embeds=c_t,
                image=z_t,
                strength=1.0,
                num_inference_steps=steps,
                guidance_scale=0.0,
                output_type="np",
            )

        rows.append(
            Timing.of(
                f"{steps} step: diffusers img2img pipeline, VAE (baseline)",
                _time(stock, dev, repeats, warmup),
            )
        )
        for label, decoder in (("VAE", None), ("tiny AE", tiny)):
            model.tiny_decoder = decoder
            # an executor decodes with what model.decoder is when it is built (VAE or tiny AE)
            renderer = Img2ImgRenderer(
                model, steps=steps, strength=1.0, executor=TorchEagerExecutor(model)
            )
            rows.append(
                Timing.of(
                    f"{steps} step: rt_recon torch, {label}",
                    _time(lambda r=renderer: r.render(z, c), dev, repeats, warmup),
                )
            )
            if compile:
                start = time.perf_counter()
                compiled = Img2ImgRenderer(
                    model, steps=steps, strength=1.0, executor=TorchCompiledExecutor(model)
                )
                compile_s[f"{steps} step, {label}"] = time.perf_counter() - start
                rows.append(
                    Timing.of(
                        f"{steps} step: rt_recon torch compiled, {label}",
                        _time(lambda r=compiled: r.render(z, c), dev, repeats, warmup),
                    )
                )
                del compiled
            if onnx:
                from rt_recon.render import OnnxExecutor

                cache = Path(tempfile.gettempdir()) / "rt_recon_bench_onnx"
                executor = OnnxExecutor(model, cache_dir=cache)
                ort_renderer = Img2ImgRenderer(model, steps, 1.0, executor=executor)
                rows.append(
                    Timing.of(
                        f"{steps} step: rt_recon ONNX Runtime, {label}",
                        _time(lambda r=ort_renderer: r.render(z, c), dev, repeats, warmup),
                    )
                )
        model.tiny_decoder = tiny
    name = torch.cuda.get_device_name() if dev.type == "cuda" else machine()
    return {
        "device": name,
        "dtype": dtype,
        "torch": torch.__version__,
        "channels_last": channels_last,
        "attention": model.attention,
        "compile_and_warm_up_s": compile_s,
        "rows": rows,
        "table": _table(rows, steps_list),
    }


def _table(rows: list[Timing], steps_list) -> str:
    """One table per step count, each with ratios against that step count's stock pipeline."""
    parts = []
    for steps in steps_list:
        mine = [r for r in rows if r.name.startswith(f"{steps} step:")]
        parts.append(markdown_table(mine, mine[0].name))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--onnx", action="store_true", help="add ONNX Runtime cases (exports once)")
    parser.add_argument(
        "--compile", action="store_true", help="add torch.compile'd cases (CUDA graphs on cuda)"
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC weights for every case")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(
        args.device,
        args.dtype,
        args.repeats,
        args.warmup,
        args.steps,
        args.onnx,
        args.compile,
        args.channels_last,
    )
    print(
        f"SD-Turbo-size img2img at 512x512 (random weights), strength 1; "
        f"{result['device']}, {args.dtype}, torch {result['torch']}, "
        f"channels_last {'on' if args.channels_last else 'off'}"
    )
    print(result["table"])
    for case, seconds in result["compile_and_warm_up_s"].items():
        print(f"compile + warm-up, {case}: {seconds:.1f} s")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
