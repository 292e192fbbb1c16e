"""The annotation library behind the Label tab: candidate pool, pair sampler, vote store, Hub sync, export, stats.

Data flow: `build_pool` / `import_folder` fill a `CandidatePool`; a `PairSampler` serves same-prompt pairs and
turns clicks into `Vote`s appended to a `VoteStore`; `HubSync` pushes the folder to a Hub dataset repo;
`export_preferences` writes the (prompt, video_w, video_l) dataset the DPO trainer reads (`export_merged` for the
replicas of one votes repo); `GoldMaker` makes the degraded copies behind gold pairs (quality control, never data).
"""

from huvidpo.annotation.export import (
    export_merged,
    export_preferences,
    export_raw_votes,
    load_exported_pairs,
    merge_replicas,
    pairs_from_scores,
)
from huvidpo.annotation.gold import GoldMaker
from huvidpo.annotation.pool import (
    CATEGORY_PRESETS,
    CandidatePool,
    ClipRecord,
    UnknownClipError,
    build_pool,
    import_folder,
    import_hub_dataset,
    load_prompts,
)
from huvidpo.annotation.sampler import PairSampler, ServedPair
from huvidpo.annotation.stats import (
    flagged_labelers,
    head_to_head,
    inter_annotator_agreement,
    labeler_quality,
    labeler_stats,
    leaderboard,
    pool_progress,
)
from huvidpo.annotation.sync import HubSync
from huvidpo.annotation.votes import Choice, Vote, VoteStore, pair_id_for

__all__ = [
    "CATEGORY_PRESETS",
    "CandidatePool",
    "Choice",
    "ClipRecord",
    "GoldMaker",
    "HubSync",
    "PairSampler",
    "ServedPair",
    "UnknownClipError",
    "Vote",
    "VoteStore",
    "build_pool",
    "export_merged",
    "export_preferences",
    "export_raw_votes",
    "flagged_labelers",
    "head_to_head",
    "import_folder",
    "import_hub_dataset",
    "inter_annotator_agreement",
    "labeler_quality",
    "labeler_stats",
    "leaderboard",
    "load_exported_pairs",
    "load_prompts",
    "merge_replicas",
    "pair_id_for",
    "pairs_from_scores",
    "pool_progress",
]
