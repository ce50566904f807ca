"""Pause a long training run and resume it exactly, in safetensors and JSON (no pickle).

The embedded model's retrain takes about 100 minutes on a 2-core CPU, longer
than a working session may have left. With ``--checkpoint DIR`` the training
loops save their whole state every ``--checkpoint-every`` steps (the models',
the optimiser's, the random generator's, the loss curve so far) and, with
``--time-limit-min``, stop after the first save past the limit: the same
command run again continues from the last save. Resumed runs give the weights
an uninterrupted run gives, bit for bit (tests/training/test_checkpoint.py).

A checkpoint is one file, ``state.safetensors`` in the folder: every tensor
(``module:<name>.<key>``, ``optimizer:<stage>.<param>.<key>``,
``generator:<stage>``) and, as JSON in its metadata, the rest (the stage, its
last step, the run's configuration, the curves, the seconds spent). It is
written to a temporary name and renamed, so a run killed while saving keeps
the previous checkpoint whole.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

log = logging.getLogger("train_embedded")

#: Key of the JSON state in the checkpoint file's safetensors metadata.
META_KEY = "train_state"

#: Exit status of a run that stopped at its time limit with its state saved (EX_TEMPFAIL).
PAUSED_EXIT = 75

#: Configuration fields a resumed run may change (they do not change the result).
FREE_FIELDS = ("threads", "device")


class Paused(Exception):  # noqa: N818 (a pause, not an error)
    """Raised after a save past the time limit; the run continues when started again."""


class Checkpoint:
    """A training run's saved state in ``folder`` (see the module doc)."""

    def __init__(
        self,
        folder: str | Path,
        config: dict[str, Any],
        every: int = 100,
        time_limit_s: float | None = None,
    ):
        if every < 1:
            raise ValueError(f"checkpoint-every must be >= 1, found {every}")
        self.folder = Path(folder)
        # as JSON gives it back (tuples become lists), so a saved one compares equal
        kept = {k: v for k, v in config.items() if k not in FREE_FIELDS}
        self.config = json.loads(json.dumps(kept))
        self.every = every
        self.deadline = None if time_limit_s is None else time.monotonic() + time_limit_s

    @property
    def path(self) -> Path:
        return self.folder / "state.safetensors"

    def load(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """``(meta, tensors)`` of the last save, or None where there is none. A save made
        with another configuration is refused with the fields that differ."""
        if not self.path.is_file():
            return None
        with safe_open(str(self.path), framework="pt") as f:
            meta = json.loads(f.metadata()[META_KEY])
        saved = {k: v for k, v in meta["config"].items() if k not in FREE_FIELDS}
        differ = sorted(
            k for k in set(saved) | set(self.config) if saved.get(k) != self.config.get(k)
        )
        if differ:
            changes = ", ".join(
                f"{k}: saved {saved.get(k)!r}, now {self.config.get(k)!r}" for k in differ
            )
            raise ValueError(
                f"{self.folder}: the checkpoint was saved by a run configured differently "
                f"({changes}); use another --checkpoint folder, or the saved configuration"
            )
        tensors = load_file(self.path)
        log.info("resuming from %s: %s step %d", self.folder, meta["stage"], meta["step"])
        return meta, tensors

    def due(self, step: int, last: int) -> bool:
        """Whether to save after ``step`` (every ``every`` steps, and after the stage's last)."""
        return (step + 1) % self.every == 0 or step == last

    def save(
        self, stage: str, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> None:
        """Save, then raise :class:`Paused` if the time limit has passed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"stage": stage, "step": step, "config": self.config, **meta}
        tmp = self.path.with_name(self.path.name + ".partial")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={META_KEY: json.dumps(payload)},
        )
        os.replace(tmp, self.path)  # the step and its tensors change together
        if self.deadline is not None and time.monotonic() > self.deadline:
            log.info("time limit reached: saved %s step %d in %s", stage, step, self.folder)
            raise Paused(f"{stage} step {step}")


def module_tensors(name: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module:<name>.<key>`` for each of its state's tensors."""
    return {f"module:{name}.{k}": v for k, v in module.state_dict().items()}


def load_module(name: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    start = f"module:{name}."
    state = {k[len(start) :]: v for k, v in tensors.items() if k.startswith(start)}
    module.load_state_dict(state)


def optimizer_state(
    prefix: str, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimiser's state as tensors (``optimizer:<prefix>.<param>.<name>``) and JSON (its
    groups)."""
    state = optimizer.state_dict()
    tensors = {
        f"optimizer:{prefix}.{index}.{name}": value
        if torch.is_tensor(value)
        else torch.tensor(value)
        for index, entries in state["state"].items()
        for name, value in entries.items()
    }
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer(
    prefix: str,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    saved: dict[str, Any],
) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    start = f"optimizer:{prefix}."
    for key, value in tensors.items():
        if key.startswith(start):
            index, name = key[len(start) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def generator_state(prefix: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"generator:{prefix}": generator.get_state()}


def load_generator(
    prefix: str, generator: torch.Generator, tensors: dict[str, torch.Tensor]
) -> None:
    generator.set_state(tensors[f"generator:{prefix}"])
