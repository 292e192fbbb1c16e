"""Evaluation: CLIP metrics with a tiny random CLIP saved locally, oracle metrics on rendered world clips,
the pairwise win rate, and the ``python -m huvidpo.eval`` CLI on the tiny checkpoint (with and without a LoRA)."""

import json
import math

import numpy as np
import PIL.Image
import pytest
import torch
from peft import LoraConfig
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

from huvidpo.annotation.stats import wilson_interval
from huvidpo.world.oracle import prefer
from huvidpo.world.clips import ClipSpec, render_clip, render_degraded
from huvidpo.world.tiny import build_tiny_pipeline, build_tokenizer
from huvidpo.eval import (
    BASE_LABEL,
    LORA_LABEL,
    EvalReport,
    diversity,
    evaluate,
    load_clip,
    oracle_clip_metrics,
    pairwise_win_rate,
    preference_from_totals,
    summarize_oracle,
    win_rate,
)
from huvidpo.eval.__main__ import main, resolve_prompts
from huvidpo.generate import GenerationSettings
from huvidpo.hub import ModelLoadError, save_lora

PROMPTS = ["a red circle moving left on a blue background", "a green square moving up on a white background"]
SPECS = [
    ClipSpec("circle", "red", "blue", "left"),
    ClipSpec("square", "green", "white", "up"),
    ClipSpec("triangle", "yellow", "black", "right", speed="quickly"),
    ClipSpec("circle", "white", "red", "down"),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A random tiny CLIPModel with a locally built CLIP tokenizer and a PIL image processor, saved like a Hub repo."""
    path = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = build_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_dir):
    return load_clip(str(tiny_clip_dir))


@pytest.fixture(scope="module")
def tiny_lora_dir(tmp_path_factory):
    """A LoRA with random (non-zero) B matrices for the tiny pipeline of ``tiny_model_dir``."""
    path = tmp_path_factory.mktemp("tiny-lora")
    unet = build_tiny_pipeline(seed=0).unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    save_lora(unet, path)
    return path


def random_frames(seed, num_frames=4, size=40):
    return np.random.default_rng(seed).random((num_frames, size, size, 3)).astype(np.float32)


# --- CLIP metrics ---------------------------------------------------------------------------------------------


def test_identical_frames_are_fully_consistent(tiny_clip):
    frame = random_frames(0, num_frames=1)
    assert tiny_clip.score_video(np.repeat(frame, 5, axis=0), "a red circle").consistency == pytest.approx(1.0, abs=1e-5)
    assert tiny_clip.score_video(random_frames(1, 5), "a red circle").consistency < 0.999


def test_text_alignment_is_the_mean_of_per_frame_cosines(tiny_clip):
    frames = random_frames(2, num_frames=3)
    prompt = "a blue square moving right"
    model, processor, tokenizer = tiny_clip.model, tiny_clip.image_processor, tiny_clip.tokenizer
    with torch.no_grad():
        tokens = tokenizer([prompt], return_tensors="pt")
        text = model.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output[0]
        cosines = []
        for frame in frames:  # one frame at a time, through PIL
            image = PIL.Image.fromarray((frame * 255).round().astype(np.uint8))
            pixels = processor(images=image, return_tensors="pt").pixel_values
            embedding = model.get_image_features(pixel_values=pixels).pooler_output[0]
            cosines.append(float(torch.nn.functional.cosine_similarity(embedding, text, dim=0)))
    assert tiny_clip.score_video(frames, prompt).text_alignment == pytest.approx(np.mean(cosines), abs=1e-5)


def test_diversity_is_zero_for_identical_videos_and_positive_otherwise(tiny_clip):
    video = random_frames(3)
    same = [tiny_clip.score_video(video, "x").embedding for _ in range(3)]
    assert diversity(same) == pytest.approx(0.0, abs=1e-5)
    different = [tiny_clip.score_video(random_frames(seed), "x").embedding for seed in (4, 5, 6)]
    assert diversity(different) > 1e-4
    assert diversity(different[:1]) is None


def test_unknown_clip_model_offline_is_explained(tmp_path):
    with pytest.raises(ModelLoadError, match="nobody/no-such-clip-model") as info:
        load_clip("nobody/no-such-clip-model")
    assert "--clip-model none" in str(info.value) and "hf download" in str(info.value)
    with pytest.raises(ModelLoadError, match="No CLIP model folder"):
        load_clip(str(tmp_path / "missing"))


# --- oracle metrics -------------------------------------------------------------------------------------------


def test_perfect_clips_match_everything():
    metrics = [oracle_clip_metrics(render_clip(spec, num_frames=12), spec.prompt) for spec in SPECS]
    summary = summarize_oracle(metrics)
    for key in ("shape", "color", "background", "direction", "all"):
        assert summary[f"{key}_match_rate"] == 1.0, key
    assert summary["smoothness"] > 0.95 and summary["oracle_total"] > 0.95
    assert summary["flicker"] < 1e-3 and summary["steadiness"] > 0.99


@pytest.mark.parametrize("kind, failed", [
    ("wrong_color", "color_match"), ("wrong_shape", "shape_match"), ("wrong_direction", "direction_match"),
    ("jitter", None), ("flicker", None),
])
def test_degraded_clips_score_lower(kind, failed):
    spec = SPECS[0]
    good = oracle_clip_metrics(render_clip(spec, num_frames=12), spec.prompt)
    bad = oracle_clip_metrics(render_degraded(spec, kind, num_frames=12, seed=3), spec.prompt)
    assert bad.oracle_total < good.oracle_total - 0.05
    if failed:
        assert not getattr(bad, failed) and not bad.all_match
    if kind == "jitter":
        assert bad.smoothness < good.smoothness
    if kind == "flicker":
        assert bad.flicker > good.flicker + 0.01 and bad.steadiness < good.steadiness


def test_pairwise_win_rate_on_a_hand_made_set():
    # B wins on pairs 0 and 1, loses on pair 2, ties on pair 3 (both perfect).
    clips_a, clips_b = [], []
    for i, spec in enumerate(SPECS):
        good, bad = render_clip(spec, num_frames=12), render_degraded(spec, "wrong_color", num_frames=12, seed=i)
        clips_a.append(bad if i < 2 else good)
        clips_b.append(good if i != 2 else bad)
    totals_a = [oracle_clip_metrics(c, s.prompt).oracle_total for c, s in zip(clips_a, SPECS)]
    totals_b = [oracle_clip_metrics(c, s.prompt).oracle_total for c, s in zip(clips_b, SPECS)]
    rate, votes = pairwise_win_rate(totals_a, totals_b)
    assert votes == ["b", "b", "a", "tie"]
    # the stored totals give the oracle's own vote
    oracle_votes = [prefer(a, b, s.prompt) for a, b, s in zip(clips_a, clips_b, SPECS)]
    assert oracle_votes == ["right", "right", "left", "tie"]
    assert (rate.wins, rate.losses, rate.ties, rate.n) == (2, 1, 1, 4)
    assert rate.win_rate == pytest.approx(2.5 / 4)
    assert rate.ci95 == pytest.approx(wilson_interval(2.5, 4))
    assert rate.ci95[0] < rate.win_rate < rate.ci95[1]


def test_win_rate_edge_cases():
    assert win_rate([]).win_rate is None
    assert win_rate(["tie"] * 6).win_rate == 0.5
    all_wins = win_rate(["b"] * 10)
    assert all_wins.win_rate == 1.0
    assert all_wins.ci95 == pytest.approx((0.7225, 1.0), abs=1e-3)
    assert preference_from_totals(0.5, 0.51) == "tie"
    with pytest.raises(ValueError, match="one B clip per A clip"):
        pairwise_win_rate([0.1], [])


# --- evaluate() and the CLI -----------------------------------------------------------------------------------


def test_resolve_prompts(tmp_path):
    file = tmp_path / "prompts.txt"
    file.write_text("# a comment\na red circle, on blue\n\na green square\n")
    assert resolve_prompts(str(file)) == ["a red circle, on blue", "a green square"]
    assert resolve_prompts("a, b ,c") == ["a", "b", "c"]
    assert len(set(resolve_prompts("heldout", num_prompts=3))) == 3
    with pytest.raises(ValueError, match="No prompts"):
        resolve_prompts(" , ")


def cli_args(model_dir, clip_dir, out):
    return [
        "--model", str(model_dir), "--prompts", ",".join(PROMPTS), "--seeds", "0", "--frames", "4", "--steps", "2",
        "--image-steps", "2", "--guidance", "1", "--clip-model", str(clip_dir), "--out", str(out),
    ]


def test_cli_base_only(tiny_model_dir, tiny_clip_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(cli_args(tiny_model_dir, tiny_clip_dir, out) + ["--save-videos"]) == 0
    printed = capsys.readouterr().out
    assert "| base |" in printed and "CLIP text align." in printed and LORA_LABEL not in printed
    report = json.loads((out / "eval.json").read_text())
    assert [r["prompt"] for r in report["records"]] == PROMPTS
    assert all((out / "videos").glob("*.mp4")) and all(r["video"] for r in report["records"])
    summary = report["summary"][BASE_LABEL]
    assert 0.0 <= summary["all_match_rate"] <= 1.0 and -1.0 <= summary["clip_text_alignment"] <= 1.0
    assert summary["clip_diversity"] is None  # one seed: one video per prompt
    assert report["pairwise"] is None
    assert PIL.Image.open(out / "eval.png").format == "PNG"


def test_cli_with_lora_compares_the_same_prompt_and_seed(tiny_model_dir, tiny_clip_dir, tiny_lora_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(cli_args(tiny_model_dir, tiny_clip_dir, out) + ["--lora", str(tiny_lora_dir), "--lora-scale", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert f"| {BASE_LABEL} |" in printed and f"| {LORA_LABEL} |" in printed and "oracle win rate" in printed
    report = EvalReport.load(out / "eval.json")
    base = [r for r in report.records if r["variant"] == BASE_LABEL]
    lora = [r for r in report.records if r["variant"] == LORA_LABEL]
    assert [(r["prompt"], r["seed"]) for r in base] == [(r["prompt"], r["seed"]) for r in lora]
    assert all(r["settings"]["lora"] == str(tiny_lora_dir) and r["settings"]["lora_scale"] == 0.8 for r in lora)
    assert report.pairwise["n"] == 2 and len(report.pairwise["votes"]) == 2
    assert 0.0 <= report.pairwise["ci95"][0] <= report.pairwise["win_rate"] <= report.pairwise["ci95"][1] <= 1.0
    assert set(report.summary) == {BASE_LABEL, LORA_LABEL}
    assert (out / "eval.png").stat().st_size > 1000


def test_evaluate_without_clip_leaves_the_base_model(tiny_pipe, tiny_lora_dir):
    template = GenerationSettings(prompt="", frames=3, steps=2, guidance=1.0, image_steps=2, lora_scale=0.5)
    calls = []
    report = evaluate(tiny_pipe, PROMPTS[:1], [3], template, lora=str(tiny_lora_dir), progress=lambda *a: calls.append(a))
    assert not tiny_pipe.get_list_adapters()
    assert calls == [(1, 2), (2, 2)]
    assert [(r["variant"], r["seed"]) for r in report.records] == [(BASE_LABEL, 3), (LORA_LABEL, 3)]
    assert report.summary[LORA_LABEL]["clip_text_alignment"] is None and "CLIP" not in report.table()
    assert report.config["lora_scale"] == 0.5 and "prompt" not in report.config["settings"]
    assert math.isfinite(report.summary[BASE_LABEL]["oracle_total"])
    with pytest.raises(ValueError, match="No seeds"):
        evaluate(tiny_pipe, PROMPTS, [], template)
    with pytest.raises(ModelLoadError, match="LoRA"):  # before generating anything
        evaluate(tiny_pipe, PROMPTS, [0], template, lora=str(tiny_lora_dir / "missing"), progress=calls.append)
    assert len(calls) == 2


def test_cli_bad_settings_exit_with_the_reason(tmp_path, capsys):
    for flag, value, reason in (("--seeds", "0,x", "seeds must be integers separated by commas"),
                                ("--num-prompts", "0", "num_prompts must be an integer from 1 to 10000")):
        with pytest.raises(SystemExit) as exit_info:
            main(["--out", str(tmp_path / "eval"), flag, value])
        assert exit_info.value.code == 2 and reason in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_cli_reads_a_yaml_file_that_flags_override(tiny_model_dir, tmp_path):
    out = tmp_path / "eval"
    settings = tmp_path / "eval.yaml"
    settings.write_text(f"out: {out}\nframes: 3\nseeds: '5'\nguidance: 2.0\n")
    args = ["--config", str(settings), "--model", str(tiny_model_dir), "--prompts", PROMPTS[0], "--steps", "2",
            "--image-steps", "2", "--guidance", "1", "--clip-model", "none"]
    assert main(args) == 0
    report = EvalReport.load(out / "eval.json")
    assert [r["seed"] for r in report.records] == [5]
    assert report.config["settings"]["frames"] == 3 and report.config["settings"]["guidance"] == 1.0


def test_cli_unknown_clip_model_fails_before_generating(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    args = cli_args(tiny_model_dir, "nobody/no-such-clip-model", out)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nobody/no-such-clip-model" in err and "--clip-model none" in err
    assert not out.exists()
