"""What the Gradio studio (``app.py``) calls: settings, access rules, session state and three services.

Nothing here imports Gradio: the callbacks' logic is tested without a browser, and ``app.py`` only lays
out components and turns ``ValueError``s into messages.

    config = StudioConfig(data_dir="data", local_maintainer=True)
    generation, labeling = GenerationService(config), LabelingService(config)
    training = TrainingManager(config, labeling)
"""

from huvidpo.studio.access import AccessError, User, require_labeler, require_maintainer, resolve_user
from huvidpo.studio.config import StudioConfig, on_space
from huvidpo.studio.generation import (
    GeneratedClip,
    GenerationService,
    check_settings,
    list_loras,
    reproduce_command,
    resolve_lora,
)
from huvidpo.studio.labeling import AnnotationSync, LabelingService
from huvidpo.studio.session import SessionState
from huvidpo.studio.training import TrainingManager, TrainRequest, metrics_frame
from huvidpo.studio.zerogpu import gpu

__all__ = [
    "AccessError",
    "AnnotationSync",
    "GeneratedClip",
    "GenerationService",
    "LabelingService",
    "SessionState",
    "StudioConfig",
    "TrainRequest",
    "TrainingManager",
    "User",
    "check_settings",
    "gpu",
    "list_loras",
    "metrics_frame",
    "on_space",
    "reproduce_command",
    "require_labeler",
    "require_maintainer",
    "resolve_lora",
    "resolve_user",
]
