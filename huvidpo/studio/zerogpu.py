"""ZeroGPU support: ``spaces.GPU`` where the ``spaces`` package is installed, a no-op elsewhere.

On a ZeroGPU Space a GPU is attached only while a function decorated with ``spaces.GPU`` runs; the
package itself is a no-op outside ZeroGPU hardware, so the same code runs on a laptop, a GPU Space
and a ZeroGPU Space.
"""

from __future__ import annotations

from typing import Callable, TypeVar

Fn = TypeVar("Fn", bound=Callable)


def gpu(fn: Fn | None = None, *, duration: int = 120) -> Fn | Callable[[Fn], Fn]:
    """Decorate a function that needs the GPU: ``@gpu`` or ``@gpu(duration=60)`` (seconds of GPU per call)."""

    def decorate(function: Fn) -> Fn:
        try:
            import spaces
        except ImportError:
            return function
        gpu_decorator = getattr(spaces, "GPU", None)  # None: the repo's spaces/ folder, not the package
        return gpu_decorator(duration=duration)(function) if gpu_decorator is not None else function

    return decorate(fn) if fn is not None else decorate
