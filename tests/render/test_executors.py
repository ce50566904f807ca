"""Executors are passed into one renderer: the default, the contract, wrapping, and a
scheduler that frames never change."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from rt_recon.render import (
    ExecutorWrapper,
    Img2ImgRenderer,
    NetworkExecutor,
    TorchCompiledExecutor,
    TorchEagerExecutor,
    load_render_model,
)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_render_model(tiny_model_dir)


def _inputs(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=model.latent_shape).astype(np.float32)
    c = rng.normal(size=model.cond_shape).astype(np.float32)
    return z, c


def test_the_default_executor_is_torch_eager(model):
    renderer = Img2ImgRenderer(model, 2, 0.5)
    assert isinstance(renderer.executor, TorchEagerExecutor)
    assert renderer.executor.name == "torch eager"
    z, c = _inputs(model, 0)
    explicit = Img2ImgRenderer(model, 2, 0.5, executor=TorchEagerExecutor(model))
    np.testing.assert_array_equal(renderer.render(z, c), explicit.render(z, c))


def test_executors_satisfy_the_protocol(model):
    for executor in (
        TorchEagerExecutor(model),
        TorchCompiledExecutor(model),  # builds without compiling (prepare compiles)
        ExecutorWrapper(TorchEagerExecutor(model)),
    ):
        assert isinstance(executor, NetworkExecutor), type(executor).__name__


class Recording(ExecutorWrapper):
    """Counts the calls and sleeps before each UNet call."""

    name = "recording"

    def __init__(self, inner: NetworkExecutor, delay_s: float):
        super().__init__(inner)
        self.delay_s, self.calls, self.prepared = delay_s, [], 0

    def unet(self, sample: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls.append(("unet", tuple(sample.shape), t.ndim, tuple(cond.shape)))
        time.sleep(self.delay_s)
        return super().unet(sample, t, cond)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.calls.append(("decode", tuple(latents.shape)))
        return super().decode(latents)

    def prepare(self, warm_up) -> None:
        self.prepared += 1
        super().prepare(warm_up)


def test_a_wrapped_executor_sees_every_call_and_changes_nothing_else(model):
    z, c = _inputs(model, 1)
    expected = Img2ImgRenderer(model, 4, 0.75, seed=2).render(z, c)
    wrapped = Recording(TorchEagerExecutor(model), delay_s=0.05)
    renderer = Img2ImgRenderer(model, 4, 0.75, seed=2, executor=wrapped)
    assert wrapped.prepared == 1 and not wrapped.calls  # the eager executor needs no warm-up
    started = time.perf_counter()
    frame = renderer.render(z, c)
    elapsed = time.perf_counter() - started
    np.testing.assert_array_equal(frame, expected)
    latent, cond = (1, *model.latent_shape), (1, *model.cond_shape)
    assert wrapped.calls == [("unet", latent, 0, cond)] * 3 + [("decode", latent)]
    assert elapsed >= 3 * 0.05  # the wrapper's delay is the renderer's
    assert renderer.executor.name == "recording"


def test_the_wrapper_forwards_the_inner_name():
    class Inner:
        name = "inner"

    assert ExecutorWrapper(Inner()).name == "inner"  # type: ignore[arg-type]


def test_compiled_executor_refuses_to_run_before_it_is_prepared(model):
    from rt_recon.errors import ModelError

    executor = TorchCompiledExecutor(model)
    with pytest.raises(ModelError, match="has not been prepared: pass it to Img2ImgRenderer"):
        executor.decode(torch.zeros(1, *model.latent_shape))


def test_frames_never_change_the_prepared_scheduler(model):
    """Each frame steps its own copy (public API only); the prepared scheduler keeps its
    attributes and its tensors' values, frame after frame."""
    renderer = Img2ImgRenderer(model, 4, 0.75, seed=3)
    scheduler = renderer.scheduler
    before = dict(vars(scheduler))
    tensors = {k: v.clone() for k, v in before.items() if isinstance(v, torch.Tensor)}
    assert scheduler.step_index is None and scheduler.begin_index == 1
    z, c = _inputs(model, 2)
    first = renderer.render(z, c)
    np.testing.assert_array_equal(renderer.render(z, c), first)
    assert vars(scheduler).keys() == before.keys()
    for key, value in vars(scheduler).items():
        assert value is before[key], key  # nothing rebound on the prepared scheduler
    for key, value in tensors.items():
        torch.testing.assert_close(getattr(scheduler, key), value, rtol=0, atol=0)
