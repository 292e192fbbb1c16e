"""Fill a studio's candidate pool with a model's clips, ready to label.

    python -m huvidpo.annotation.fill --data-dir data --prompts train-speedless --num-prompts 16 --clips-per-prompt 4

A prompt's clips continue the first frame of its first clip (``--shared-first-frame``, the default), so a pair
differs in what the video model did, the part a DPO LoRA trains, not in a first frame drawn well or badly.
Reruns add only the clips still missing (``build_pool`` is resumable). The studio's Label tab serves the pool at
once; it need not be restarted.

``--lora RUN_FOLDER`` fills the next preference round instead: that LoRA's clips on the same prompts, seeds and
settings as the pool's base clips (:mod:`.rounds`; the prompt and generation flags are then not used)::

    python -m huvidpo.annotation.fill --data-dir data --lora data/runs/dpo-20261202-180000
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
              progress: Callable[[int, int], None] | None = None, seeds: list[int] | None = None,
              recorded_extra: dict[str, Any] | None = None) -> list[ClipRecord]:
    """``clips_per_prompt`` clips (seeds 0, 1, ...; or ``seeds``) of each prompt from ``pipe`` into ``pool``; returns
    every clip. ``settings.lora`` generates with that LoRA; ``recorded_extra`` is added to each clip's settings (a
    round's number and LoRA name: :mod:`.rounds`)."""
    import tempfile

    from ..data.video import write_video
    from ..generate import clip_fps, generate

    seeds = list(seeds) if seeds is not None else list(range(clips_per_prompt))
    first_frames: dict[str, Any] = {}
    staging = tempfile.TemporaryDirectory(prefix="huvidpo-fill-")  # the pool copies each clip in
    clips_dir = Path(staging.name)

    def generate_fn(prompt: str, seed: int, **_: Any) -> Path:
        if shared_first_frame and prompt not in first_frames and seed != seeds[0]:
            # A rerun whose first clip of this prompt is done: its first frame again (made before any video noise
            # is drawn, so two frames and one step give the same one).
            _, first_frames[prompt] = generate(pipe, replace(settings, prompt=prompt, seed=seeds[0], frames=2, steps=1))
        image = first_frames.get(prompt) if shared_first_frame else None
        frames, first = generate(pipe, replace(settings, prompt=prompt, seed=seed), image=image)
        first_frames.setdefault(prompt, first)
        name = hashlib.sha1(prompt.encode()).hexdigest()[:12]
        return write_video(frames, clips_dir / f"{name}_{seed}.mp4", fps=clip_fps(settings, pipe))

    recorded = {"model": model_name, **{key: value for key, value in settings.to_dict().items()
                                        if key not in ("prompt", "seed", "lora")}, "shared_first_frame": shared_first_frame}
    if settings.lora:
        recorded["lora"] = settings.lora
    recorded.update(recorded_extra or {})
    with staging:
        return build_pool(pool, generate_fn, prompts, len(seeds), settings=recorded, progress=progress, seeds=seeds)


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
    lora: str | None = setting(None, "Fill the next preference round: this LoRA's clips (a trained run's folder) on the "
                               "pool's base prompts, seeds and settings; the prompt and generation flags are not used.")

    def __post_init__(self) -> None:
        check_settings(self)


def show(done: int, total: int) -> None:
    print(f"\rclips {done}/{total}", end="", file=sys.stderr, flush=True)


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
        pool = CandidatePool(studio.pool_dir)
        if config.lora:
            from .rounds import fill_round, round_summary

            number, clips = fill_round(pipe, pool, config.lora, progress=show)
            print(file=sys.stderr)
            print(f"Round {number}: {len(clips)} clips of {config.lora} in {studio.pool_dir}. {round_summary(pool)}")
            return 0
        clips = fill_pool(pipe, pool, prompts, config.clips_per_prompt, settings,
                          config.shared_first_frame, config.model or "embedded default",
                          progress=show)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    pairs = len(prompts) * config.clips_per_prompt * (config.clips_per_prompt - 1) // 2
    print(f"{len(clips)} clips of {len(prompts)} prompts in {studio.pool_dir}: {pairs} pairs to label.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
