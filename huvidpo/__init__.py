"""HuViDPO Studio: Direct Preference Optimization for text-to-video diffusion (arXiv 2502.01690).

What is unusual here: importing the package drops one notice of transformers (below). Every entry point (app,
CLIs, scripts, benchmarks, tests) imports `huvidpo` before diffusers, which is what triggers the notice.
"""

import logging

__version__ = "0.1.0"

TORCHVISION_FALLBACK_NOTICE = "requires torchvision (not installed); falling back to"


def _drop_torchvision_fallback_notice(record: logging.LogRecord) -> bool:
    return TORCHVISION_FALLBACK_NOTICE not in record.getMessage()


# Why: transformers 5 names its torchvision-backed image processors `<Model>ImageProcessor` and, without
# torchvision, hands out the PIL ones with a warning for each class that diffusers imports at start (CLIP,
# SigLIP, SigLIP 2). The PIL processors are what we want, and torchvision cannot be installed here beside
# torch 2.13.0 (PyPI's torchvision fails to import with it), so the notice is noise. Only that message is
# dropped, on the logger that emits it (`logger.warning_once` in transformers.utils.import_utils); every
# other warning of transformers still shows. Importing transformers to reach it would cost seconds, and the
# stdlib logger object is the one transformers will use.
logging.getLogger("transformers.utils.import_utils").addFilter(_drop_torchvision_fallback_notice)
