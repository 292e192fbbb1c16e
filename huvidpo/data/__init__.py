"""Data: video I/O, the synthetic shapes world and its pixel oracle."""

from .oracle import ClipReading, OracleConfig, OracleScore, matches, prefer, read_clip, score_clip
from .video import VideoInfo, probe_video, read_video, to_uint8_frames, write_preview, write_video
from .world import (
    ClipSpec,
    Distractor,
    PromptAttributes,
    generate_world,
    make_prompt_set,
    parse_prompt,
    render_clip,
    render_degraded,
    sample_clip_spec,
    split_combinations,
    straight_track,
    world_dataset,
    world_frames,
)

__all__ = [
    "ClipReading", "ClipSpec", "Distractor", "OracleConfig", "OracleScore", "PromptAttributes", "VideoInfo",
    "generate_world", "make_prompt_set", "matches", "parse_prompt", "prefer", "probe_video", "read_clip",
    "read_video", "render_clip", "render_degraded", "sample_clip_spec", "score_clip", "split_combinations",
    "straight_track", "to_uint8_frames", "world_dataset", "world_frames", "write_preview", "write_video",
]
