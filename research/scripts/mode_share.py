"""The unprompted speed mode's shares of a model, as bench/taste.py measures its base: the taste plan's 16 held-out
speedless prompts x its 4 seeds (64 clips), no LoRA; plus the oracle's faithfulness on them.

    python research/scripts/mode_share.py MODEL_DIR research/results/mode-share-NAME.json [GUIDANCE]   # ~6 min on 2 cores

GUIDANCE (default: the bench's, GenerationSettings') measures the same clips at another guidance scale.
"""
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

from huvidpo.hub import load_pipeline

spec = importlib.util.spec_from_file_location("taste_bench", Path(__file__).resolve().parents[2] / "bench" / "taste.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["taste_bench"] = bench
spec.loader.exec_module(bench)

pipe = load_pipeline(sys.argv[1])
settings, heldout, seeds = bench.heldout_setup(bench.TastePlan())
if len(sys.argv) > 3:
    settings = replace(settings, guidance=float(sys.argv[3]))
rows = bench.measure(pipe, heldout, seeds, settings, None)
result = {"model": sys.argv[1], "guidance": settings.guidance, "clips": len(rows), "slowly": bench.share(rows, "slowly"), "quickly": bench.share(rows, "quickly"),
          "faithfulness": bench.faithfulness(rows)}
print(json.dumps(result))
Path(sys.argv[2]).write_text(json.dumps({**result, "rows": rows}, indent=1) + "\n")
