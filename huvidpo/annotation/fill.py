"""Fill a studio's candidate pool with a model's clips, ready to label.

    python -m huvidpo.annotation.fill --data-dir data --prompts train-speedless --num-prompts 16 --clips-per-prompt 4

A prompt's clips continue the first frame of its first clip (``--shared-first-frame``, the default), so a pair
differs in what the video model did, the part a DPO LoRA trains, not in a first frame drawn well or badly.
Reruns add only the clips still missing (``build_pool`` is resumable). The studio's Label tab serves the pool at
once; it need not be restarted.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ..generate import GenerationFlags, GenerationSettings
from ..settings import MAX_SEED, SettingsParser, check_settings, setting
from ..world.clips import PROMPT_SETS
from .pool import CandidatePool, ClipRecord, build_pool



def fill_pool(pipe: Any, pool: CandidatePool, prompts: list[str], clips_per_prompt: int, settings: GenerationSettings,
              shared_first_frame: bool = True, model_name: str = "embedded default",
              progress: Callable[[int, int], None] | None = None) -> list[ClipRecord]:
    """``clips_per_prompt`` clips (seeds 0, 1, ...) of each prompt from ``pipe`` into ``pool``; returns every clip."""
    import tempfile

    from ..data.video import write_video
    from ..generate import generate

    first_frames: dict[str, Any] = {}
    staging = tempfile.TemporaryDirectory(prefix="huvidpo-fill-")  # the pool copies each clip in
    clips_dir = Path(staging.name)

    def generate_fn(prompt: str, seed: int, **_: Any) -> Path:
        image = first_frames.get(prompt) if shared_first_frame else None
        frames, first = generate(pipe, replace(settings, prompt=prompt, seed=seed), image=image)
        first_frames.setdefault(prompt, first)
        name = hashlib.sha1(prompt.encode()).hexdigest()[:12]
        return write_video(frames, clips_dir / f"{name}_{seed}.mp4", fps=settings.fps)

    recorded = {"model": model_name, **{key: value for key, value in settings.to_dict().items()
                                        if key not in ("prompt", "seed", "lora")}, "shared_first_frame": shared_first_frame}
    with staging:
        return build_pool(pool, generate_fn, prompts, clips_per_prompt, settings=recorded, progress=progress)


@dataclass
class FillConfig:
    data_dir: str = setting("data", "The studio's data dir (its pool is DATA_DIR/pool).")
    model: str | None = setting(None, "Pipeline folder or Hub id; empty: the embedded default.")
    prompts: str = setting("train-speedless", "A file with one prompt a line, a world prompt set ("
                           + ", ".join(PROMPT_SETS) + "), or 'a,b,c'.")
    num_prompts: int = setting(16, "How many prompts a prompt set draws.", min=1, max=10_000)
    prompt_seed: int = setting(2, "Seed of the prompt set's draw.", min=0, max=MAX_SEED)
    clips_per_prompt: int = setting(4, "Clips per prompt (n clips make n(n-1)/2 pairs to label).", min=2, max=64)
    shared_first_frame: bool = setting(True, "A prompt's clips continue its first clip's first frame.")

    def __post_init__(self) -> None:
        check_settings(self)


def main(argv: list[str] | None = None) -> int:
    parser = SettingsParser([FillConfig, GenerationFlags], prog="python -m huvidpo.annotation.fill", description=__doc__)
    config, generation, _ = parser.parse(argv)
    from ..hub import load_pipeline
    from ..studio.config import StudioConfig
    from ..world.clips import resolve_prompts

    try:
        studio = StudioConfig(data_dir=config.data_dir, model=config.model)
        settings = GenerationSettings(prompt="", **asdict(generation))
        prompts = resolve_prompts(config.prompts, config.num_prompts, config.prompt_seed)
        pipe = load_pipeline(config.model)
        clips = fill_pool(pipe, CandidatePool(studio.pool_dir), prompts, config.clips_per_prompt, settings,
                          config.shared_first_frame, config.model or "embedded default",
                          progress=lambda done, total: print(f"\rclips {done}/{total}", end="", file=sys.stderr, flush=True))
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    pairs = len(prompts) * config.clips_per_prompt * (config.clips_per_prompt - 1) // 2
    print(f"{len(clips)} clips of {len(prompts)} prompts in {studio.pool_dir}: {pairs} pairs to label.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
