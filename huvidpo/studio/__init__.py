"""What the Gradio studio calls: settings, access rules, session state and three services.

Nothing imported here imports Gradio: the services compute what the tabs show (``LabelingService.view``,
``TrainingManager.view``) and are tested without a browser. The Gradio side is ``huvidpo.studio.app``
(``build_demo``, ``main``) and one module per tab in ``huvidpo.studio.tabs``.

    config = StudioConfig(data_dir="data", local_maintainer=True)
    gpu = GpuTurns(config)  # one GPU, both jobs: generation is refused while a run trains on it
    generation, labeling = GenerationService(config, gpu=gpu), LabelingService(config)
    training = TrainingManager(config, labeling, gpu=gpu)  # each run in its own process
"""

from huvidpo.studio.access import AccessError, User, require_labeler, require_maintainer, resolve_user, role_text
from huvidpo.studio.config import StudioConfig
from huvidpo.studio.generation import (
    GeneratedClip,
    GenerationService,
    check_settings,
    list_loras,
    reproduce_command,
    resolve_lora,
)
from huvidpo.studio.gpu_turns import GpuTurns
from huvidpo.studio.labeling import AnnotationSync, LabelingService
from huvidpo.studio.session import SessionState
from huvidpo.studio.training import TrainingManager, TrainRequest
from huvidpo.studio.zerogpu import gpu

__all__ = [
    "AccessError",
    "AnnotationSync",
    "GeneratedClip",
    "GenerationService",
    "GpuTurns",
    "LabelingService",
    "SessionState",
    "StudioConfig",
    "TrainRequest",
    "TrainingManager",
    "User",
    "check_settings",
    "gpu",
    "list_loras",
    "reproduce_command",
    "require_labeler",
    "require_maintainer",
    "resolve_lora",
    "resolve_user",
    "role_text",
]
