"""Model loaders for Train tab runs in tests. A run loads its model in its own (spawned) process, which imports the
loader by name: so they live at module level here, not inside a test. pytest puts this folder on ``sys.path`` and
the run's process gets the same path; a script started by a test inserts it itself."""

import os
import time

UNET_DELAY = 0.3  # seconds added to every UNet call by slowed_load: a cancel sent meanwhile lands mid-step


def failing_load(model):
    raise ValueError("no model here")


def slow_load(model):
    """Loads for five minutes (a run that a test kills or abandons), after saying which process it is in."""
    print("loading", os.getpid(), flush=True)
    time.sleep(300)


def out_of_memory_load(model):
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 23.65 GiB total)")


def slowed_load(model):
    """The real model, each UNet call UNET_DELAY slower: a test's cancel reaches the run before the step or clip
    it is aimed at is over."""
    from huvidpo.training.trainer import load_training_pipeline

    pipe = load_training_pipeline(model)
    forward = pipe.unet.forward

    def slowed(*args, **kwargs):
        time.sleep(UNET_DELAY)
        return forward(*args, **kwargs)

    pipe.unet.forward = slowed
    return pipe


def segfault_load(model):
    """Crashes the process as a bug in native code would (reads address 0)."""
    import ctypes

    ctypes.string_at(0)
