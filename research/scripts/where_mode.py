"""Where is the speed mode decided? Re-draw base clips from strength s (video-to-video, frame 0 kept) with
another seed and count the clips that keep the mode the oracle read in the base clip.

    python research/scripts/where_mode.py research/results/where-mode.json
"""
import json
import sys
from dataclasses import replace
from huvidpo.generate import GenerationSettings, generate
from huvidpo.hub import load_pipeline
from huvidpo.world.clips import make_prompt_set
from huvidpo.world.metrics import oracle_clip_metrics

pipe = load_pipeline(None)
prompts = make_prompt_set("heldout", 8, seed=5, unstated_speed_prob=1.0)
settings = GenerationSettings(prompt="-", frames=16, steps=25, image_steps=25)
strengths = [0.4, 0.6, 0.8, 0.9]
rows = []
for i, prompt in enumerate(prompts):
    frames, first = generate(pipe, replace(settings, prompt=prompt, seed=i))
    mode = oracle_clip_metrics(frames, prompt).modes.get("speed")
    row = {"prompt": prompt, "mode": mode}
    for s in strengths:
        redrawn, _ = generate(pipe, replace(settings, prompt=prompt, seed=1000 + i), video=frames, strength=s)
        row[str(s)] = oracle_clip_metrics(redrawn, prompt).modes.get("speed")
    rows.append(row)
    print(json.dumps(row), flush=True)
for s in strengths:
    kept = sum(r[str(s)] == r["mode"] for r in rows)
    print(f"strength {s}: mode kept in {kept}/{len(rows)}")
json.dump({"rows": rows, "kept": {str(s): sum(r[str(s)] == r["mode"] for r in rows) for s in strengths}},
          open(sys.argv[1], "w"), indent=1)
