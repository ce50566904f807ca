"""Render one frame: rt_recon's renderer vs the stock diffusers img2img pipeline call.

Both get the same model, latents, conditioning, steps and strength; the
stock pipeline is called as a user would (``StableDiffusionImg2ImgPipeline``
with ``image=`` latents and ``prompt_embeds=``, ``guidance_scale=0``,
``output_type="np"``). The renderer runs the torch eager executor; with
``--onnx`` also the ONNX Runtime executor (CPU provider here; exported once
into a cache). Run in the same process, medians and ratios reported.

    python -m benchmarks.bench_render [--model DIR] [--steps 4] [--strength 1.0] [--repeats 30]
                                      [--onnx]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import Timing, machine, markdown_table, write_json
from rt_recon.render import EMBEDDED_DIR, Img2ImgRenderer, TorchEagerExecutor, load_render_model
from rt_recon.render.stock import stock_pipeline


def _time(fn, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run(
    model_dir=EMBEDDED_DIR,
    steps: int = 4,
    strength: float = 1.0,
    repeats: int = 30,
    onnx: bool = False,
) -> dict:
    model = load_render_model(model_dir)
    rng = np.random.default_rng(0)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    renderer = Img2ImgRenderer(
        model, steps=steps, strength=strength, seed=0, executor=TorchEagerExecutor(model)
    )
    pipe = stock_pipeline(model)
    z_t, c_t = torch.from_numpy(z)[None], torch.from_numpy(c)[None]

    def stock() -> None:
        pipe(
            prompt_embeds=c_t,
            image=z_t,
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=0.0,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )

    rows = [
        Timing.of("diffusers StableDiffusionImg2ImgPipeline (baseline)", _time(stock, repeats)),
        Timing.of(
            "rt_recon Img2ImgRenderer.render, TorchEagerExecutor",
            _time(lambda: renderer.render(z, c), repeats),
        ),
    ]
    if onnx:
        from rt_recon.render import OnnxExecutor

        cache = Path(tempfile.gettempdir()) / "rt_recon_bench_onnx"
        executor = OnnxExecutor(model, cache_dir=cache)
        ort_renderer = Img2ImgRenderer(model, steps, strength, seed=0, executor=executor)
        name = "rt_recon Img2ImgRenderer.render, OnnxExecutor (ONNX Runtime, CPU)"
        rows.append(Timing.of(name, _time(lambda: ort_renderer.render(z, c), repeats)))
    return {
        "model": str(model_dir),
        "unet_calls": renderer.n_unet_calls,
        "image_size": model.image_size,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "table": markdown_table(rows, rows[0].name),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(EMBEDDED_DIR))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--onnx", action="store_true", help="add the ONNX Runtime backend")
    parser.add_argument("--json")
    args = parser.parse_args()
    result = run(args.model, args.steps, args.strength, args.repeats, args.onnx)
    print(
        f"render one frame: {result['unet_calls']} UNet call(s) + VAE decode at "
        f"{result['image_size']}px; {result['machine']}, {result['torch_threads']} torch threads"
    )
    print(result["table"])
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
