"""Generation and training on one GPU take turns: the one home of that rule.

What is unusual here:
- The rule applies only when the Generate tab's device and a training run's device are one CUDA device
  (:func:`same_cuda_device`). Then, while a training run (or the next preference round's clips) holds the GPU, a
  visitor's generation is refused at once with a message saying why and when generation is back; a run that starts
  while a clip is being generated waits for that clip (and refuses any new one meanwhile), then starts. A refusal
  is better than a silent queue: a run takes minutes to hours, and a generation beside it on a full GPU would fail
  with an out-of-memory error, or take the run down with it.
- On a CPU, or with the app generating on another GPU (``--device cuda:1``), nothing is refused: both run at once,
  sharing the processor as they always did.
- The device decision is injectable (``same_device``), so tests check the rule on a CPU without faking CUDA.
- One instance per app, shared by its ``GenerationService`` and ``TrainingManager`` (``build_demo`` makes it).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

from huvidpo.studio.config import StudioConfig

TRAINING_DEVICE = 0  # a studio run is one accelerate process: it trains on the first visible CUDA device


def same_cuda_device(config: StudioConfig) -> bool:
    """Whether the Generate tab's pipeline (``config.device``, default ``cuda`` when there is one) and a training run
    (the first visible CUDA device) use one CUDA device. Imports torch."""
    import torch

    if not torch.cuda.is_available():
        return False
    generation = torch.device(config.device or "cuda")
    if generation.type != "cuda":
        return False
    return (generation.index if generation.index is not None else torch.cuda.current_device()) == TRAINING_DEVICE


class GpuTurns:
    """Who has the GPU: the generations in progress, or one holder (a training run, a round's clips)."""

    def __init__(self, config: StudioConfig, same_device: Callable[[], bool] | None = None) -> None:
        self._same_device = same_device or (lambda: same_cuda_device(config))
        self._shared: bool | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._generating = 0
        self._holder: str | None = None

    def shared(self) -> bool:
        """Whether generation and training share one GPU (decided once, by the first run: torch is imported by then)."""
        if self._shared is None:
            self._shared = bool(self._same_device())
        return self._shared

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """Held while a clip is generated (waiting for the pipeline included); a ``ValueError`` while a training job
        holds a shared GPU."""
        with self._lock:
            if self._holder is not None and self._shared:
                raise ValueError(
                    f"The GPU is busy with {self._holder}, so generation is paused: it is back when that ends (a "
                    "maintainer can cancel a run in the Train tab). Try again later."
                )
            self._generating += 1
        try:
            yield
        finally:
            with self._lock:
                self._generating -= 1
                self._idle.notify_all()

    def hold(self, holder: str) -> None:
        """Give the GPU to ``holder`` (e.g. "the training run dpo-... (started by ada)"): from now on generations are
        refused if the GPU is shared. The caller then waits for the generations in progress
        (:meth:`wait_for_generations`) and calls :meth:`release` when done."""
        self.shared()
        with self._lock:
            if self._holder is not None:
                raise RuntimeError(f"The GPU is already held by {self._holder}.")
            self._holder = holder

    def wait_for_generations(self, stopped: Callable[[], bool] = lambda: False,
                             waiting: Callable[[], None] | None = None) -> bool:
        """Block until no clip is being generated (at once when the GPU is not shared); ``waiting()`` is called once
        if there is a wait. False if ``stopped()`` became true first."""
        if not self.shared():
            return True
        with self._idle:
            told = False
            while self._generating:
                if stopped():
                    return False
                if waiting is not None and not told:
                    waiting()
                    told = True
                self._idle.wait(0.2)
        return True

    def release(self) -> None:
        with self._lock:
            self._holder = None
