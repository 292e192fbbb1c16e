"""The unprompted speed mode's shares of a model, as bench/taste.py measures its base: the taste plan's 16 held-out
speedless prompts x its 4 seeds (64 clips), no LoRA; plus the oracle's faithfulness on them.

    python research/scripts/mode_share.py MODEL_DIR research/results/mode-share-NAME.json   # ~6 min on 2 cores
"""
import importlib.util
import json
import sys
from pathlib import Path

from huvidpo.generate import GenerationSettings
from huvidpo.hub import load_pipeline
from huvidpo.world.clips import make_prompt_set

spec = importlib.util.spec_from_file_location("taste_bench", Path(__file__).resolve().parents[2] / "bench" / "taste.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["taste_bench"] = bench
spec.loader.exec_module(bench)

plan = bench.TastePlan()
pipe = load_pipeline(sys.argv[1])
heldout = make_prompt_set("heldout", plan.heldout_prompts, seed=1, unstated_speed_prob=1.0)  # bench/taste.py's held-out set
settings = GenerationSettings(prompt="-", frames=plan.frames, steps=plan.steps, image_steps=plan.steps)
rows = bench.measure(pipe, heldout, list(range(plan.eval_seeds)), settings, None)
result = {"model": sys.argv[1], "clips": len(rows), "slowly": bench.share(rows, "slowly"), "quickly": bench.share(rows, "quickly"),
          "faithfulness": bench.faithfulness(rows)}
print(json.dumps(result))
Path(sys.argv[2]).write_text(json.dumps({**result, "rows": rows}, indent=1) + "\n")
