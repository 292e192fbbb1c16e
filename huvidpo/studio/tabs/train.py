"""The Train tab (maintainers only, checked on the server): a DPO run on the votes, its live curves and log,
cancel, before/after clips, and the push of its LoRA.

What is unusual here:
- The inputs show ``TrainingManager.setting_defaults()`` (DPOConfig's, the studio's presets, and on the embedded
  default the world's taste plan), read when a page loads rather than when the page is built: importing the
  trainers imports torch, and the app serves its page before that. An endpoint call that leaves a setting out
  gets the same default (``TrainRequest``'s None).
- Every endpoint answers with what ``TrainingManager.view`` computes; a timer polls it while a run is active.
- Starting a run outputs only the (hidden) status, then the view follows: a refused start (a bad setting, a run
  already going) shows its message and leaves the plots, log and clips of the last run as they were.
- Preference rounds: "Start round k+1" fills the pool with the newest finished run's clips (the base clips'
  prompts and seeds), with a progress bar over the clips; the reference box trains the next LoRA against the base
  or against that previous round.
- The number boxes take any number and the server says what is wrong, naming the setting as the CLI and the
  config file do (Gradio's own bounds would say "Value 0 is less than minimum value 1", and round 2.5 to 2).
"""

import gradio as gr

from huvidpo.data.preferences import PREFERENCE_FORMATS, STUDIO
from huvidpo.studio.access import User, require_maintainer
from huvidpo.studio.tabs.generate import lora_choices
from huvidpo.studio.training import TrainingManager, TrainRequest
from huvidpo.studio.tabs.label import table
from huvidpo.studio.ui import Page, checked_by_handler, flag, handler, number, text, whole

COMPARISON_ROWS = 2  # before/after rows on the page (the run makes clips for every comparison prompt)
FOLLOW_LOG = """() => requestAnimationFrame(() => {
  const box = document.querySelector('#train-log textarea');
  if (box) box.scrollTop = box.scrollHeight;
})"""


def preset_dropdown() -> gr.Dropdown:
    """The optimizer preset's choices, default and what each sets, from ``DPOConfig`` (read when a page loads: the
    training package is not imported while the page is built)."""
    from huvidpo.training.config import DPO_PRESETS, DPOConfig

    spec = DPOConfig.__dataclass_fields__["preset"]
    ours, original = DPO_PRESETS["ours"], DPO_PRESETS["huvidpo"]
    return gr.Dropdown(
        choices=list(spec.metadata["choices"]), value=spec.default,
        info=f"huvidpo: the original code's AdamW eps {original['adam_epsilon']:g}, weight decay "
             f"{original['weight_decay']:g} and LoRA dropout {original['lora_dropout']:g} (ours: {ours['adam_epsilon']:g}, "
             f"{ours['weight_decay']:g}, {ours['lora_dropout']:g}); the settings above apply to either.",
    )


def reference_dropdown() -> gr.Dropdown:
    """The DPO reference's choices and default, from ``DPOConfig`` (read when a page loads, as the preset's)."""
    from huvidpo.training.config import REFERENCES

    return gr.Dropdown(choices=list(REFERENCES), value=REFERENCES[0])


def build_train_tab(page: Page, training: TrainingManager, lora_box: gr.Dropdown | None) -> None:
    config = page.config
    limits = {"concurrency_limit": 4, "concurrency_id": "train"}
    with gr.Tab("Train", id="train", visible=config.local_maintainer) as tab:
        gr.Markdown(
            "Train a DPO LoRA on the votes, on this machine, while the app keeps serving (each run in its own process; "
            "on a GPU the Generate tab shares, generation pauses during a run). "
            "Maintainers only; the Hub token comes from the server's environment (`HF_TOKEN`)."
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                dataset_box = gr.Dropdown(
                    choices=["votes"], value="votes", allow_custom_value=True,  # the exports: on load, for maintainers
                    label="Pairs: 'votes' (export the votes now), an earlier export, a folder of DATA_DIR/imports, "
                          "or a Hub dataset id",
                )
                format_box = gr.Dropdown(
                    choices=list(PREFERENCE_FORMATS), value=STUDIO, elem_id="train-data-format",
                    label="Format of the pairs: the studio's, or a public schema of a Hub dataset (ties are dropped)",
                )
                exclude_box = gr.Checkbox(value=False, label="Leave out labelers flagged by gold checks ('votes')",
                                          elem_id="train-exclude-flagged")
                base_model_box = gr.Textbox(label="Base model (empty: the one this app serves)", placeholder=config.model_name)
                reference_box = gr.Dropdown(  # choices on load (reference_dropdown), as the preset's
                    value=TrainRequest().reference, allow_custom_value=True, elem_id="train-reference",
                    label="DPO reference: 'base' (the model without a LoRA; the LoRA starts at zero) or 'previous' (the "
                          "newest finished run's LoRA, which the new one starts from)",
                )
                with gr.Row():
                    beta_box = checked_by_handler(gr.Number(label="beta", elem_id="train-beta"))
                    learning_rate_box = checked_by_handler(gr.Number(label="Learning rate (learning_rate)",
                                                                     elem_id="train-learning-rate"))
                with gr.Row():
                    steps_box = checked_by_handler(gr.Number(value=config.train_steps, label="Steps (max_steps)",
                                                             elem_id="train-steps"))
                    rank_box = checked_by_handler(gr.Number(label="LoRA rank (lora_rank)", elem_id="train-lora-rank"))
                    frames_box = checked_by_handler(gr.Number(value=config.train_frames, label="Frames per clip (num_frames)",
                                                              elem_id="train-frames"))
                # Choices on load (preset_dropdown); DPOConfig refuses an unknown preset with the choices.
                preset_box = gr.Dropdown(label="Optimizer preset (preset)", elem_id="train-preset", allow_custom_value=True)
                with gr.Row():
                    start = gr.Button("Start training", variant="primary", elem_id="train-start")
                    cancel = gr.Button("Cancel", variant="stop", elem_id="train-cancel")
                    refresh = gr.Button("Refresh", size="sm")
            with gr.Column(scale=2, min_width=400):
                summary_md = gr.Markdown("No run yet.", label="summary", elem_id="train-status")
                with gr.Row():  # on a narrow screen the plots stack
                    plot = {"x": "step", "min_width": 240}  # the default height keeps the x-axis title
                    loss_plot = gr.LinePlot(y="loss", label="DPO loss", elem_id="train-loss-plot", **plot)
                    accuracy_plot = gr.LinePlot(y="accuracy", label="Implicit accuracy", y_lim=[0, 1], **plot)
                    margin_plot = gr.LinePlot(y="margin", label="Reward margin", **plot)
                log_box = gr.Textbox(label="Log", lines=8, max_lines=8, autoscroll=True, interactive=False,
                                     elem_id="train-log")
                with gr.Accordion("Runs on this data dir", open=False):
                    runs_table = gr.Dataframe(label="Runs (newest first)", interactive=False, elem_id="train-runs")
                    with gr.Row(equal_height=True):
                        resume_box = gr.Dropdown(label="Interrupted run to resume", choices=[], allow_custom_value=True,
                                                 scale=3)
                        resume = gr.Button("Resume", scale=1, elem_id="train-resume")
        with gr.Accordion("Preference rounds", open=False):
            gr.Markdown("A round adds the newest finished run's clips to the pool, on the prompts and seeds of the base "
                        "clips, so labelers compare it with the earlier rounds; the Label tab's leaderboard ranks them.")
            round_md = gr.Markdown(elem_id="train-rounds")
            round_button = gr.Button("Start the next round", elem_id="train-start-round")
        gr.Markdown("#### Before / after (fixed prompts and seed)")
        comparison_videos = []
        for prompt in config.comparison_prompts[:COMPARISON_ROWS]:
            with gr.Row():
                comparison_videos.append((
                    gr.Video(label=f"Before: {prompt}", height=200, autoplay=True, loop=True, interactive=False),
                    gr.Video(label=f"After: {prompt}", height=200, autoplay=True, loop=True, interactive=False),
                ))
        with gr.Row(equal_height=True):
            repo_box = gr.Textbox(label="Hub model repo", placeholder="your-name/huvidpo-dpo-lora", scale=3)
            private_box = gr.Checkbox(value=True, label="Private", scale=1)
            push = gr.Button("Push LoRA to the Hub", scale=1, elem_id="train-push")
        push_md = gr.Markdown(label="link")
        status_json = gr.JSON(label="status", visible=False)
        timer = gr.Timer(1.0, active=False)

    def show() -> dict:
        """Every Train tab output from the manager's view (the status dict first: that is what scripts read)."""
        view = training.view()
        # No points yet: an empty plot, not an empty table (a chart first drawn from an empty table keeps the empty
        # chart's margins and clips its axes once points arrive).
        metrics = None if view["metrics"].empty else view["metrics"]
        updates = {
            status_json: view["status"],
            summary_md: view["summary"],
            loss_plot: metrics,
            accuracy_plot: metrics,
            margin_plot: metrics,
            log_box: view["log"],
            runs_table: table(view["runs"], empty="no runs yet"),
            resume_box: gr.Dropdown(choices=[row["run"] for row in view["runs"] if row["state"] == "interrupted"]),
            timer: gr.Timer(active=view["running"]),
        }
        for (before_video, after_video), (before, after) in zip(comparison_videos, view["comparison"]):
            updates.update({before_video: before, after_video: after})
        return updates

    def rounds_shown(message: str = "") -> dict:
        view = training.round_view()
        button = gr.Button(value=f"Start round {view['next_round']}" if view["next_round"] else "Start the next round",
                           interactive=view["lora"] is not None)
        return {round_md: "\n\n".join(part for part in (message, view["summary"]) if part), round_button: button}

    @handler(config)
    def start_training(dataset, base_model, beta=None, learning_rate=None, max_steps=None, lora_rank=None, frames=None,
                       user: User = None, data_format=STUDIO, exclude_flagged=False, preset=None, reference="base"):
        """Start a DPO run in its own process (maintainers only); returns its status. Settings left out take the
        Train tab's presets and DPOConfig's defaults; data_format names a public schema (see `--data_format`); preset
        is DPOConfig's optimizer preset ('ours', or 'huvidpo': the original code's); reference 'previous' trains
        against (and from) the newest finished run's LoRA."""
        require_maintainer(config, user, "Training")
        status = training.start(user, TrainRequest(
            dataset=text(dataset, "dataset") or "votes", data_format=text(data_format, "format") or STUDIO,
            exclude_flagged=bool(flag(exclude_flagged, "exclude flagged")), model=text(base_model, "base model"),
            beta=number(beta, "beta"), learning_rate=number(learning_rate, "learning_rate"),
            steps=whole(max_steps, "max_steps"), lora_rank=whole(lora_rank, "lora_rank"), frames=whole(frames, "num_frames"),
            preset=text(preset, "preset") or None,
            reference=text(reference, "reference") or "base",
        ))
        return {status_json: status}

    @handler(config)
    def start_round(user: User, progress=gr.Progress()):
        """Start the pool's next preference round from the newest finished run (maintainers only): its clips of the
        base clips' prompts and seeds go into the pool; returns what was added."""
        progress(0, desc="Loading the model")

        def made(done: int, total: int) -> None:
            progress((done, total), desc="Making the round's clips", unit="clips")

        return rounds_shown(training.start_round(user, progress=made))

    @handler(config)
    def rounds_status(user: User):
        """The pool's rounds and what the next one would come from (maintainers only)."""
        require_maintainer(config, user, "Starting a round")
        return rounds_shown()

    @handler(config)
    def resume_training(run_id: str, user: User):
        """Continue an interrupted run (its studio was killed) from its last checkpoint (maintainers only)."""
        training.resume(user, text(run_id, "run"))
        return show()

    @handler(config)
    def training_status(user: User):
        """The current run's status, metrics and log (maintainers only)."""
        require_maintainer(config, user, "Training")
        return show()

    @handler(config)
    def cancel_training(user: User):
        """Stop the current run after its current step; the LoRA so far is saved."""
        training.cancel(user)
        return show()

    @handler(config)
    def push_lora(repo_id: str, private: bool, user: User):
        """Push the last run's LoRA and model card to a Hub model repo; returns a link."""
        url = training.push(user, text(repo_id, "repo"), flag(private, "private") is not False)
        return {push_md: f"Pushed: [{url}]({url})"}

    @handler(config)
    def on_load(user: User):
        """Per visitor: the tab for maintainers (polling while a run is active), the settings' defaults and bounds in
        the inputs, the exports in the dataset box; nothing of it for anyone else (the page itself names no export)."""
        if not user.maintainer:
            return {tab: gr.Tab(visible=False), timer: gr.Timer(active=False),
                    **{box: gr.skip() for box in (beta_box, learning_rate_box, rank_box, steps_box, frames_box, dataset_box,
                                                  preset_box, reference_box)}}
        defaults, bounds = training.setting_defaults(), training.setting_bounds()

        def bounded(name: str, **value) -> gr.Number:
            # the range as text only: an update setting minimum/maximum would bring back Gradio's own check (a
            # message naming no field); the server checks the range and names the setting
            low, high = bounds[name]
            return gr.Number(info=f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}", **value)

        return {
            tab: gr.Tab(visible=user.maintainer),
            timer: gr.Timer(active=user.maintainer and training.active()),
            beta_box: bounded("beta", value=defaults["beta"]),
            learning_rate_box: bounded("learning_rate", value=defaults["learning_rate"]),
            rank_box: bounded("lora_rank", value=defaults["lora_rank"]),
            steps_box: bounded("steps", value=defaults["steps"]),
            frames_box: bounded("frames", value=defaults["frames"]),
            dataset_box: gr.Dropdown(choices=training.dataset_choices()),
            preset_box: preset_dropdown(),
            reference_box: reference_dropdown(),
        }

    outputs = [status_json, summary_md, loss_plot, accuracy_plot, margin_plot, log_box,
               *(video for row in comparison_videos for video in row), timer, runs_table, resume_box]
    settings = [dataset_box, base_model_box, beta_box, learning_rate_box, steps_box, rank_box, frames_box]
    started = start.click(start_training, [*settings, page.name, format_box, exclude_box, preset_box, reference_box], [status_json],
                          api_name="start_training", **limits)
    round_button.click(start_round, [page.name], [round_md, round_button], api_name="start_round", **limits)
    tab.select(rounds_status, [page.name], [round_md, round_button], api_name="rounds_status", show_progress="hidden",
               **limits)
    refresh.click(training_status, [page.name], outputs, api_name="training_status", **limits)
    started.success(training_status, [page.name], outputs, api_visibility="private", show_progress="hidden", **limits)
    timer.tick(training_status, [page.name], outputs, api_visibility="private", show_progress="hidden", **limits)
    # The log shows its newest line (a read-only box does not follow its value by itself).
    log_box.change(None, None, None, js=FOLLOW_LOG, queue=False)
    tab.select(training_status, [page.name], outputs, api_visibility="private", show_progress="hidden", **limits)
    cancel.click(cancel_training, [page.name], outputs, api_name="cancel_training", **limits)
    resume.click(resume_training, [resume_box, page.name], outputs, api_name="resume_training", **limits)
    push.click(push_lora, [repo_box, private_box, page.name], [push_md], api_name="push_lora", **limits)
    page.demo.load(on_load, [page.name], [tab, timer, beta_box, learning_rate_box, rank_box, steps_box, frames_box,
                                          dataset_box, preset_box, reference_box], api_visibility="private", show_progress="hidden")

    def refresh_choices(status: dict):
        """When a run ends, its LoRA appears in the picker, its export in the dataset list, and the next round's
        button follows."""
        if status.get("state") not in ("finished", "cancelled"):
            return {component: gr.skip() for component in choice_outputs}
        updates = {dataset_box: gr.Dropdown(choices=training.dataset_choices()), **rounds_shown()}
        if lora_box is not None:
            updates[lora_box] = gr.Dropdown(choices=lora_choices(config, maintainer=True))
        return updates

    choice_outputs = [dataset_box, round_md, round_button] + ([lora_box] if lora_box is not None else [])
    status_json.change(refresh_choices, status_json, choice_outputs, api_visibility="private", queue=False)
