"""HuViDPO Studio: generate videos, label pairs, train a DPO LoRA on the votes, push it to the Hub.

The embedded default runs on any CPU::

    python -m huvidpo.world.tiny --out /tmp/tiny          # only if assets/huvidpo-tiny is not built yet
    HUVIDPO_MODEL=/tmp/tiny python app.py --maintainer   # http://127.0.0.1:7860, data in ./data

This file only lays out components and wires them to ``huvidpo.studio``; every callback is a thin
wrapper that turns a ``ValueError`` into a readable message. Named endpoints (``api_name``) make the
same actions scriptable with ``gradio_client``: generate, send_to_pool, next_pair, vote, undo,
label_stats, start_training, training_status, cancel_training, push_lora.
"""

import argparse
import functools
import json
import logging
import os
import random
import sys

# Gradio wraps every callback in a matplotlib backend switch; with the backend named, the first call does not
# import pyplot to find one (a second of CPU on a small machine). The server never opens a window.
os.environ.setdefault("MPLBACKEND", "agg")

import gradio as gr  # noqa: E402

from huvidpo.studio import (  # noqa: E402
    AccessError,
    GeneratedClip,
    GenerationService,
    LabelingService,
    SessionState,
    StudioConfig,
    TrainingManager,
    TrainRequest,
    User,
    list_loras,
    metrics_frame,
    reproduce_command,
    require_labeler,
    require_maintainer,
    resolve_user,
)
from huvidpo.studio.config import ASSETS_DIR, TABS  # noqa: E402
from huvidpo.studio.generation import import_model_stack  # noqa: E402
from huvidpo.studio.training import ACTIVE_STATES  # noqa: E402

logger = logging.getLogger("huvidpo.app")

CHOICE_BUTTONS = {  # choice -> (label, elem_id); the keyboard shortcuts click these ids
    "left": ("⬅ Left is better", "label-left"),
    "tie": ("Tie (t)", "label-tie"),
    "both_bad": ("Both bad (b)", "label-both-bad"),
    "skip": ("Skip (s)", "label-skip"),
    "right": ("Right is better ➡", "label-right"),
}
KEYBOARD_SHORTCUTS = """
<script>
(() => {
  const keys = {ArrowLeft: "label-left", ArrowRight: "label-right", t: "label-tie", b: "label-both-bad", s: "label-skip", u: "label-undo"};
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
    const id = keys[event.key] || keys[(event.key || "").toLowerCase()];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null || button.disabled) return;  // the Label tab is not showing
    event.preventDefault();
    button.click();
  });
})();
</script>
"""


def user_errors(fn):
    """Show errors a user can cause as a message; anything else as a short notice (the log has the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except AccessError as err:
            raise gr.Error(str(err), title="Not allowed", print_exception=False) from None
        except (ValueError, OSError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # noqa: BLE001 - never show a traceback to a visitor
            logger.exception("Unexpected error in %s", fn.__name__)
            raise gr.Error(
                f"Something went wrong on the server ({type(err).__name__}). Try again; if it persists, tell the maintainers.",
                print_exception=False,
            ) from None

    return wrapper


class StudioBlocks(gr.Blocks):
    """The studio's Blocks: ``launch()`` brings the studio's theme, CSS, keyboard shortcuts and served folders."""

    def __init__(self, config: StudioConfig, **kwargs):
        super().__init__(analytics_enabled=False, **kwargs)  # no calls home: the app runs offline
        self.studio_config = config
        self.services: dict = {}
        css_path = ASSETS_DIR / "studio.css"
        self.launch_defaults = {
            "theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="pink"),
            "css": css_path.read_text(encoding="utf-8") if css_path.is_file() else None,
            "head": KEYBOARD_SHORTCUTS,
            # Only media folders: outputs are copied from there; votes.jsonl and exports are never served.
            "allowed_paths": [str(config.generated_dir), str(config.pool_dir / "videos"), str(config.runs_dir), str(ASSETS_DIR)],
        }

    def launch(self, *args, **kwargs):
        for key, value in self.launch_defaults.items():
            if kwargs.get(key) is None:
                kwargs[key] = value
        return super().launch(*args, **kwargs)


def _username(profile) -> str | None:
    return getattr(profile, "username", None) if profile is not None else None


def role_text(config: StudioConfig, user: User) -> str:
    """One line under the name box: who you are and what you may do."""
    if config.oauth and not user.name:
        return "Visitor: sign in to label."
    if not user.name:
        return "Maintainer (local): type a name to label." if user.maintainer else "Visitor: type a name to label."
    rights = {"maintainer": "generate, label, train and push", "labeler": "generate and label"}[user.role]
    return f"**{user.name}** · {user.role}: you can {rights}."


def load_examples(config: StudioConfig) -> list[list]:
    """Example rows for the Generate tab (assets/examples.json), clamped to this app's limits."""
    path = ASSETS_DIR / "examples.json"
    if not path.is_file():
        return []
    rows = []
    for example in json.loads(path.read_text(encoding="utf-8")):
        rows.append([
            example["prompt"],
            min(int(example.get("frames", config.default_frames)), config.max_frames),
            min(int(example.get("steps", config.default_steps)), config.max_steps),
            float(example.get("guidance", 7.5)),
            int(example.get("seed", 0)),
        ])
    return rows


# ---------------------------------------------------------------------------------------------- Generate


def build_generate_tab(config: StudioConfig, generation: GenerationService, labeling: LabelingService | None, name, state):
    limits = {"concurrency_limit": config.generate_concurrency, "concurrency_id": "generate"}
    with gr.Tab("Generate", id="generate"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a red circle moving left on a blue background", elem_id="gen-prompt")
                with gr.Row():
                    frames = gr.Slider(2, config.max_frames, value=config.default_frames, step=1, label="Frames")
                    steps = gr.Slider(1, config.max_steps, value=config.default_steps, step=1, label="Denoising steps")
                with gr.Row():
                    guidance = gr.Slider(0, 20, value=7.5, step=0.5, label="Guidance")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", scale=2)
                    random_seed = gr.Button("Random", scale=0, min_width=72, size="sm", elem_id="gen-random-seed")
                with gr.Accordion("LoRA", open=True):
                    with gr.Row():
                        lora = gr.Dropdown(
                            choices=lora_choices(config), value="", allow_custom_value=True, scale=3,
                            label="LoRA: a trained run, loras/<folder>, or a Hub model id (empty: base model)",
                        )
                        lora_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="Scale", scale=2)
                    compare = gr.Checkbox(label="Compare: base and base + LoRA side by side, same seed", value=False)
                with gr.Accordion("More settings", open=False):
                    negative_prompt = gr.Textbox(label="Negative prompt (needs guidance > 1)")
                    first_frame = gr.Image(label="First frame (optional: image-to-video)", type="pil", sources=["upload", "clipboard"], height=200)
                    image_steps = gr.Slider(1, config.max_steps, value=config.default_steps, step=1, label="First-frame model steps")
                    with gr.Row():
                        shared_noise = gr.Slider(0, 0.95, value=0.2, step=0.05, label="Shared noise across frames")
                        adain = gr.Checkbox(value=True, label="Match frame statistics to the first frame (AdaIN)")
                run = gr.Button("Generate", variant="primary", elem_id="gen-run")
            with gr.Column(scale=3, min_width=320):
                with gr.Row():
                    base_video = gr.Video(label="Base model", visible=False, autoplay=True, loop=True, height=320, elem_id="gen-base-video")
                    video = gr.Video(label="Video", autoplay=True, loop=True, height=320, elem_id="gen-video", interactive=False)
                with gr.Row(equal_height=False):
                    first_frame_out = gr.Image(label="First frame", height=160, interactive=False, scale=1)
                    with gr.Column(scale=2):
                        to_pool = gr.Button("Send to labeling pool", elem_id="gen-to-pool", visible=labeling is not None)
                        pool_message = gr.Markdown(label="pool message")
                with gr.Accordion("Settings to reproduce", open=False):
                    details = gr.JSON(label="Settings")
                    command = gr.Code(label="Command line", language="shell", interactive=False)
        examples = load_examples(config)
        if examples:
            gr.Examples(examples, inputs=[prompt, frames, steps, guidance, seed], label="Examples", examples_per_page=4)

    @user_errors
    def on_generate(
        prompt: str, negative_prompt=None, first_frame=None, frames=None, steps=None, guidance=None, seed=None, lora=None,
        lora_scale=None, compare=None, image_steps=None, shared_noise=None, adain=None, state: SessionState = None,
        progress=gr.Progress(),
    ):
        """Generate a clip (or, with compare, base and base + LoRA with the same seed). Parameters left out take
        the page's defaults."""
        import_model_stack()
        from huvidpo.generate import GenerationSettings

        settings = GenerationSettings(
            prompt=(prompt or "").strip(),
            negative_prompt=(negative_prompt or "").strip(),
            frames=_int(frames, "frames", config.default_frames),
            steps=_int(steps, "steps", config.default_steps),
            guidance=float(7.5 if guidance is None else guidance),
            seed=_int(seed, "seed", 0),
            lora=(lora or "").strip() or None,
            lora_scale=float(1.0 if lora_scale is None else lora_scale),
            image_steps=_int(image_steps, "image steps", config.default_steps),
            shared_noise=float(0.2 if shared_noise is None else shared_noise),
            adain=True if adain is None else bool(adain),
        )
        image = first_frame.convert("RGB") if first_frame is not None else None

        def on_step(step: int, total: int) -> None:
            progress((step, total), desc="Denoising", unit="steps")

        progress(0, desc="Starting")
        if compare and settings.lora:
            clips = list(generation.compare(settings, image, on_step))
        else:
            if compare:
                gr.Warning("Compare needs a LoRA: showing the base model only.")
            clips = [generation.generate(settings, image, on_step)]
        state.last_clips = [clip.to_dict() for clip in clips]
        main = clips[-1]
        info = {"settings": main.settings, "seconds": main.seconds, "clips": len(clips)}
        return (
            str(main.video),
            str(clips[0].video) if len(clips) == 2 else None,
            str(main.first_frame),
            info,
            reproduce_command(main.settings),
            "",
            state,
        )

    gen_inputs = [prompt, negative_prompt, first_frame, frames, steps, guidance, seed, lora, lora_scale, compare,
                  image_steps, shared_noise, adain, state]
    gen_outputs = [video, base_video, first_frame_out, details, command, pool_message, state]
    generated = gr.on([run.click, prompt.submit], on_generate, gen_inputs, gen_outputs, api_name="generate", **limits)

    def show_compare(info: dict | None):
        """Compare mode shows the base model's clip next to the LoRA's."""
        compared = bool(info) and info.get("clips") == 2
        return gr.update(label="Base + LoRA" if compared else "Video"), gr.update(visible=compared)

    generated.success(show_compare, details, [video, base_video], api_visibility="private", queue=False)
    random_seed.click(lambda: random.randint(0, 2**31 - 1), None, seed, queue=False, api_visibility="private")

    if labeling is not None:

        @user_errors
        def send_to_pool(labeler_name: str, state: SessionState, profile: gr.OAuthProfile | None = None):
            """Add the clip(s) of this session's last generation to the labeling pool."""
            user = resolve_user(config, _username(profile), labeler_name)
            require_labeler(config, user)
            if not state.last_clips:
                raise ValueError("Generate a clip first, then send it to the pool.")
            records = labeling.add_clips([GeneratedClip.from_dict(clip) for clip in state.last_clips])
            pairs = labeling.progress()["pairs_total"]
            ids = ", ".join(record.clip_id for record in records)
            return f"Added to the pool: {ids} ({len(labeling.pool)} clips, {pairs} pairs to judge)."

        to_pool.click(send_to_pool, [name, state], pool_message, api_name="send_to_pool",
                      concurrency_limit=config.label_concurrency, concurrency_id="label")
    return lora


def lora_choices(config: StudioConfig) -> list[tuple[str, str]]:
    return [("(base model)", ""), *((reference, reference) for reference in list_loras(config))]


def lora_choices_update(config: StudioConfig):
    return gr.Dropdown(choices=lora_choices(config))


def _int(value, what: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if value is None or float(value) != int(float(value)):
        raise ValueError(f"{what} must be a whole number, got {value!r}.")
    return int(float(value))


# ---------------------------------------------------------------------------------------------- Label


def build_label_tab(config: StudioConfig, labeling: LabelingService, name, state):
    limits = {"concurrency_limit": config.label_concurrency, "concurrency_id": "label"}
    with gr.Tab("Label", id="label"):
        gr.Markdown(
            "Which clip follows the prompt better, with smoother and more natural motion? "
            "Keys: **←** left · **→** right · **t** tie · **b** both bad · **s** skip · **u** undo.",
            elem_classes=["label-help"],
        )
        progress_md = gr.Markdown(label="progress", elem_id="label-progress")
        prompt_md = gr.Markdown("Press **Next pair** to start.", label="prompt", elem_id="label-prompt")
        with gr.Row(equal_height=True):
            left = gr.Video(label="Left video (←)", autoplay=True, loop=True, height=300, interactive=False, elem_id="label-left-video")
            right = gr.Video(label="Right video (→)", autoplay=True, loop=True, height=300, interactive=False, elem_id="label-right-video")
        with gr.Row():
            buttons = {
                choice: gr.Button(label, elem_id=elem_id, variant="primary" if choice in ("left", "right") else "secondary")
                for choice, (label, elem_id) in CHOICE_BUTTONS.items()
            }
        with gr.Row():
            undo_button = gr.Button("↶ Undo (u)", elem_id="label-undo", size="sm")
            next_button = gr.Button("Next pair", elem_id="label-next", size="sm", variant="primary")
        with gr.Accordion("Pair details (for scripts)", open=False):
            pair_json = gr.JSON(label="Pair")
            token = gr.Textbox(label="Token", visible=False)
            choice_box = gr.Textbox(label="Choice", visible=False)
            # Scripts vote through this hidden trigger (token and choice are inputs); the buttons vote on the
            # pair on screen.
            vote_trigger = gr.Button(visible=False)
        with gr.Accordion("Labelers, agreement and leaderboard", open=False):
            stats_button = gr.Button("Refresh", size="sm")
            with gr.Row():
                progress_json = gr.JSON(label="Pool progress")
                agreement_json = gr.JSON(label="Agreement between labelers")
            labelers_table = gr.Dataframe(label="Votes per labeler", interactive=False)
            leaderboard_table = gr.Dataframe(label="Leaderboard of model versions", interactive=False)

    def show(labeler: str, state: SessionState, pair: dict | None, message: str = "", last_vote: dict | None = None):
        """The outputs shared by next_pair, vote and undo: pair JSON, both videos, prompt, progress, state."""
        state.serve(labeler, pair)
        progress = labeling.progress(labeler)
        counter = (
            f"**{progress.get('your_votes', 0)}** votes by {labeler} · **{progress['pairs_judged']}/{progress['pairs_total']}** "
            f"pairs judged ({progress['share_judged']:.0%}) · {progress['clips']} clips"
        )
        if pair is None:
            done = "The pool has no two clips with the same prompt yet." if progress["pairs_total"] == 0 else (
                "You have judged every pair in the pool. Thank you!")
            payload = {"token": None, "done": True, "message": done, "progress": progress, "last_vote": last_vote}
            return payload, None, None, f"### {done}", counter, state
        payload = {**pair, "done": False, "message": message, "progress": progress, "last_vote": last_vote}
        return (
            payload,
            str(labeling.video_path(pair["left_clip"])),
            str(labeling.video_path(pair["right_clip"])),
            f"### {pair['prompt']}",
            counter,
            state,
        )

    def labeler_of(labeler_name: str, profile) -> str:
        return require_labeler(config, resolve_user(config, _username(profile), labeler_name))

    @user_errors
    def next_pair(labeler_name: str, state: SessionState, profile: gr.OAuthProfile | None = None):
        """Serve the next pair to this labeler: (pair dict with token and prompt, left video, right video, ...)."""
        labeler = labeler_of(labeler_name, profile)
        return show(labeler, state, labeling.next_pair(labeler, state.ensure_id()))

    @user_errors
    def vote(labeler_name: str, token: str, choice: str, state: SessionState, profile: gr.OAuthProfile | None = None):
        """Record left / right / tie / both_bad / skip on the pair served with token (empty: the pair on screen),
        then serve the next pair."""
        labeler = labeler_of(labeler_name, profile)
        token = (token or "").strip() or state.pair_token
        if not token:
            raise ValueError("No pair on screen: press 'Next pair' first.")
        recorded = labeling.vote(labeler, state.ensure_id(), token, choice)
        state.votes += 1
        return show(labeler, state, labeling.next_pair(labeler, state.session_id), last_vote=recorded)

    @user_errors
    def undo(labeler_name: str, state: SessionState, profile: gr.OAuthProfile | None = None):
        """Undo your last vote of this session and show that pair again."""
        labeler = labeler_of(labeler_name, profile)
        pair = labeling.undo(labeler, state.ensure_id())
        if pair is None:
            raise ValueError("Nothing to undo in this session.")
        state.votes = max(0, state.votes - 1)
        return show(labeler, state, pair, message="Your last vote was undone: vote again.")

    def button_vote(choice: str):
        def vote_on_screen(labeler_name: str, state: SessionState, profile: gr.OAuthProfile | None = None):
            return vote(labeler_name, "", choice, state, profile)

        return vote_on_screen

    @user_errors
    def label_stats(labeler_name: str, profile: gr.OAuthProfile | None = None):
        """Pool progress, agreement, votes per labeler and the leaderboard (for labelers and maintainers)."""
        user = resolve_user(config, _username(profile), labeler_name)
        if not user.maintainer:
            require_labeler(config, user)
        stats = labeling.stats()
        return stats["progress"], stats["agreement"], _table(stats["labelers"]), _table(stats["leaderboard"])

    outputs = [pair_json, left, right, prompt_md, progress_md, state]
    gr.on([next_button.click], next_pair, [name, state], outputs, api_name="next_pair", **limits)
    vote_trigger.click(vote, [name, token, choice_box, state], outputs, api_name="vote", **limits)
    for choice, button in buttons.items():
        button.click(button_vote(choice), [name, state], outputs, api_visibility="private", **limits)
    undo_button.click(undo, [name, state], outputs, api_name="undo", **limits)
    stats_button.click(label_stats, [name], [progress_json, agreement_json, labelers_table, leaderboard_table],
                       api_name="label_stats", concurrency_limit=2, concurrency_id="stats")


def _table(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows) if rows else pd.DataFrame({"": ["no votes yet"]})


# ---------------------------------------------------------------------------------------------- Train


def build_train_tab(config: StudioConfig, training: TrainingManager, name, lora_picker, visible: bool):
    limits = {"concurrency_limit": 4, "concurrency_id": "train"}
    with gr.Tab("Train", id="train", visible=visible) as tab:
        gr.Markdown(
            "Train a DPO LoRA on the votes, on this machine, while the app keeps serving. "
            "Maintainers only; the Hub token comes from the server's environment (`HF_TOKEN`)."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                dataset = gr.Dropdown(
                    choices=training.dataset_choices(), value="votes", allow_custom_value=True,
                    label="Pairs: 'votes' (export the votes now), an earlier export, or a Hub dataset id",
                )
                base_model = gr.Textbox(value=config.model, label="Base model (empty: the one this app serves)", placeholder=config.model_name)
                with gr.Row():
                    beta = gr.Number(value=50.0, label="beta", minimum=0)
                    learning_rate = gr.Number(value=1e-4, label="Learning rate", minimum=0)
                with gr.Row():
                    max_steps = gr.Number(value=100, precision=0, minimum=1, label="Steps")
                    lora_rank = gr.Number(value=16, precision=0, minimum=1, label="LoRA rank")
                    frames = gr.Number(value=min(8, config.max_frames), precision=0, minimum=2, label="Frames per clip")
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", elem_id="train-start")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
                    refresh = gr.Button("Refresh", size="sm")
            with gr.Column(scale=2, min_width=400):
                status_md = gr.Markdown("No run yet.", label="summary", elem_id="train-status")
                with gr.Row():
                    loss_plot = gr.LinePlot(x="step", y="loss", label="loss", title="DPO loss", height=220)
                    accuracy_plot = gr.LinePlot(x="step", y="accuracy", label="accuracy", title="Implicit accuracy", height=220, y_lim=[0, 1])
                    margin_plot = gr.LinePlot(x="step", y="margin", label="margin", title="Reward margin", height=220)
                log = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False)
        gr.Markdown("#### Before / after (fixed prompts and seed)")
        comparison = []
        for index, prompt in enumerate(config.comparison_prompts[:2]):
            with gr.Row():
                comparison.append(gr.Video(label=f"Before: {prompt}", height=200, autoplay=True, loop=True, interactive=False))
                comparison.append(gr.Video(label=f"After: {prompt}", height=200, autoplay=True, loop=True, interactive=False))
        with gr.Row(equal_height=True):
            repo = gr.Textbox(label="Hub model repo", placeholder="your-name/huvidpo-dpo-lora", scale=3)
            private = gr.Checkbox(value=True, label="Private", scale=1)
            push = gr.Button("Push LoRA to the Hub", scale=1, elem_id="train-push")
        push_md = gr.Markdown(label="link")
        status_json = gr.JSON(label="status", visible=False)
        timer = gr.Timer(1.0, active=False)

    def view(status: dict):
        """status dict -> every Train tab output (the dict first: that is what scripts read)."""
        history = training.history()
        frame = metrics_frame(history)
        state = status["state"]
        if state == "idle":
            text = "No run yet."
        else:
            text = (f"**{status['run_id']}** · {state} · step {status['step']}/{status['max_steps']} · "
                    f"{status['seconds']:.0f} s · data `{status['dataset']}` · started by {status['started_by']}")
            if status.get("error"):
                text += f"\n\n**Error:** {status['error']}"
            if status.get("lora"):
                text += f"\n\nLoRA: `{status['lora']}` (pick it in the Generate tab)"
        videos = []
        for index in range(len(comparison) // 2):
            row = status.get("comparison", [])[index] if index < len(status.get("comparison", [])) else None
            videos += [row["before"], row["after"]] if row else [None, None]
        running = state in ACTIVE_STATES
        return (status, text, frame, frame, frame, training.log_tail(), *videos, gr.Timer(active=running))

    def maintainer(labeler_name: str, profile) -> User:
        user = resolve_user(config, _username(profile), labeler_name)
        require_maintainer(config, user, "Training")
        return user

    @user_errors
    def start_training(dataset, base_model, beta, learning_rate, max_steps, lora_rank, frames, labeler_name: str,
                       profile: gr.OAuthProfile | None = None):
        """Start a DPO run in the background (maintainers only); returns its status."""
        user = maintainer(labeler_name, profile)
        request = TrainRequest(
            dataset=dataset or "votes", model=base_model or "", beta=float(beta), learning_rate=float(learning_rate),
            steps=_int(max_steps, "steps"), lora_rank=_int(lora_rank, "LoRA rank"), frames=_int(frames, "frames"),
        )
        return view(training.start(user, request))

    @user_errors
    def training_status(labeler_name: str, profile: gr.OAuthProfile | None = None):
        """The current run's status, metrics and log (maintainers only)."""
        maintainer(labeler_name, profile)
        return view(training.status())

    @user_errors
    def cancel_training(labeler_name: str, profile: gr.OAuthProfile | None = None):
        """Stop the current run after its current step; the LoRA so far is saved."""
        user = resolve_user(config, _username(profile), labeler_name)
        return view(training.cancel(user))

    @user_errors
    def push_lora(repo_id: str, private: bool, labeler_name: str, profile: gr.OAuthProfile | None = None):
        """Push the last run's LoRA and model card to a Hub model repo; returns a link."""
        user = resolve_user(config, _username(profile), labeler_name)
        url = training.push(user, repo_id, private)
        return f"Pushed: [{url}]({url})"

    outputs = [status_json, status_md, loss_plot, accuracy_plot, margin_plot, log, *comparison, timer]
    start.click(start_training, [dataset, base_model, beta, learning_rate, max_steps, lora_rank, frames, name], outputs,
                api_name="start_training", **limits)
    refresh.click(training_status, [name], outputs, api_name="training_status", **limits)
    timer.tick(training_status, [name], outputs, api_visibility="private", show_progress="hidden", **limits)
    tab.select(training_status, [name], outputs, api_visibility="private", show_progress="hidden", **limits)
    cancel.click(cancel_training, [name], outputs, api_name="cancel_training", **limits)
    push.click(push_lora, [repo, private, name], push_md, api_name="push_lora", **limits)

    def refresh_choices(status: dict):
        """When a run ends, its LoRA appears in the picker and its export in the dataset list."""
        if status.get("state") not in ("finished", "cancelled"):
            return [gr.update() for _ in choice_outputs]
        return [gr.Dropdown(choices=training.dataset_choices()), lora_choices_update(config)][: len(choice_outputs)]

    choice_outputs = [dataset, lora_picker] if lora_picker is not None else [dataset]
    status_json.change(refresh_choices, status_json, choice_outputs, api_visibility="private", queue=False)
    return tab, timer


# ---------------------------------------------------------------------------------------------- the app


def build_demo(config: StudioConfig | None = None) -> gr.Blocks:
    """The studio as a Gradio Blocks app; the model loads once, in the background from here (or on first use)."""
    config = config or StudioConfig.from_env()
    config.make_dirs()
    (config.pool_dir / "videos").mkdir(parents=True, exist_ok=True)
    generation = GenerationService(config) if "generate" in config.tabs else None
    if generation is not None and config.preload_model:
        generation.start_loading()
    labeling = LabelingService(config) if "label" in config.tabs else None
    training = TrainingManager(config, labeling) if "train" in config.tabs else None

    with StudioBlocks(config, title="HuViDPO Studio") as demo:
        state = gr.State(SessionState())
        with gr.Row(equal_height=True, elem_id="studio-header"):
            gr.Markdown(
                "# HuViDPO Studio\nText-to-video with human feedback: generate clips, compare them, "
                "and train a DPO LoRA on the votes.",
                elem_id="studio-title",
            )
            with gr.Column(scale=0, min_width=280):
                if config.oauth:
                    gr.LoginButton()
                    name = gr.Textbox(visible=False)
                else:
                    name = gr.Textbox(label="Your name (for labeling)", placeholder="e.g. ada", elem_id="labeler-name", max_lines=1)
                role_md = gr.Markdown(elem_id="studio-role")
        lora_picker = None
        with gr.Tabs():
            if generation is not None:
                lora_picker = build_generate_tab(config, generation, labeling, name, state)
            if labeling is not None:
                build_label_tab(config, labeling, name, state)
            train_tab = timer = None
            if training is not None:
                train_tab, timer = build_train_tab(config, training, name, lora_picker, visible=config.local_maintainer)
        gr.Markdown(f"Model: `{config.model_name}` · data: `{config.root}`", elem_id="studio-footer")

        def on_load(labeler_name: str, profile: gr.OAuthProfile | None = None):
            """Per visitor: their role, the Train tab for maintainers, fresh LoRA choices."""
            user = resolve_user(config, _username(profile), labeler_name)
            updates = [role_text(config, user)]
            if lora_picker is not None:
                updates.append(lora_choices_update(config))
            if train_tab is not None:
                running = training.status()["state"] in ACTIVE_STATES
                updates += [gr.Tab(visible=user.maintainer), gr.Timer(active=user.maintainer and running)]
            return updates

        def on_name(labeler_name: str, profile: gr.OAuthProfile | None = None):
            return role_text(config, resolve_user(config, _username(profile), labeler_name))

        load_outputs = [role_md] + ([lora_picker] if lora_picker is not None else [])
        load_outputs += [train_tab, timer] if train_tab is not None else []
        demo.load(on_load, [name], load_outputs, api_visibility="private", queue=False)
        name.change(on_name, [name], role_md, api_visibility="private", queue=False, show_progress="hidden")
    demo.queue(max_size=config.max_queue, default_concurrency_limit=config.label_concurrency)
    demo.services = {"generation": generation, "labeling": labeling, "training": training}
    return demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description="HuViDPO Studio: the Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="Address to bind (default 127.0.0.1; 0.0.0.0 serves the network).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="Port (default 7860).")
    parser.add_argument("--share", action="store_true", help="Also open a temporary public gradio.live link.")
    parser.add_argument("--model", default=None, help="Video model folder or Hub id (default: $HUVIDPO_MODEL or the embedded model).")
    parser.add_argument("--image-model", default=None, help="First-frame text-to-image model (e.g. mhdang/dpo-sdxl-text2image-v1).")
    parser.add_argument("--data-dir", default=None, help="Folder for votes, pool, runs and exports (default ./data, or $HUVIDPO_DATA_DIR).")
    parser.add_argument("--maintainer", action="store_true",
                        help="Local use: everyone reaching this app may train and push. On a Space use HUVIDPO_MAINTAINERS.")
    parser.add_argument("--maintainers", default=None, help="Comma-separated Hugging Face usernames allowed to train (with sign-in).")
    parser.add_argument("--oauth", action=argparse.BooleanOptionalAction, default=None,
                        help="Sign in with Hugging Face (default: on when running on a Space).")
    parser.add_argument("--votes-repo", default=None, help="Hub dataset repo the votes are pushed to (default $HUVIDPO_VOTES_REPO).")
    parser.add_argument("--tabs", default=None, help=f"Comma-separated tabs to show, among {','.join(TABS)} (default all).")
    parser.add_argument("--device", default=None, help="torch device for generation (default cuda if present, else cpu).")
    parser.add_argument("--no-preload", action="store_true", help="Load the model on the first generation instead of at start-up.")
    return parser


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    return StudioConfig.from_env(
        model=args.model, image_model=args.image_model, data_dir=args.data_dir, local_maintainer=args.maintainer or None,
        maintainers=args.maintainers, oauth=args.oauth, votes_repo=args.votes_repo, tabs=args.tabs, device=args.device,
        preload_model=False if args.no_preload else None,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        demo = build_demo(config)
    except ValueError as err:  # bad flags, a model that cannot be loaded: say what to do, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    _, local_url, share_url = demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True, quiet=True,
    )
    print(f"HuViDPO Studio is serving at {local_url}" + (f" and {share_url}" if share_url else ""), flush=True)
    print(f"Data (votes, pool, runs, exports) in {config.root}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        if demo.services["labeling"] is not None:
            demo.services["labeling"].close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
