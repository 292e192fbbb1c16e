"""The Label tab: two clips of one prompt side by side, a choice by button or key, undo, and the stats.

``next_pair``, ``vote`` and ``undo`` all answer with what ``LabelingService.view`` computes (the pair as scripts
read it, both videos, the prompt, the progress line). Scripts vote through a hidden trigger that takes the pair's
token; the buttons and keys vote on the pair on screen (the session remembers its token).
"""

import gradio as gr

from huvidpo.studio.access import User, require_labeler, require_stats_reader
from huvidpo.studio.labeling import LabelingService
from huvidpo.studio.session import SessionState
from huvidpo.studio.ui import Page, handler, text

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


STATS_EVERY_SECONDS = 5.0  # how often the open stats panel refreshes itself
DECIMALS = 3


def rounded(value):
    """Numbers as people read them (0.667, not 0.6666666666666666), in plain dicts and lists."""
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def table(rows: list[dict], empty: str = "no votes yet"):
    import pandas as pd

    return pd.DataFrame(rounded(rows)) if rows else pd.DataFrame({"": [empty]})


def build_label_tab(page: Page, labeling: LabelingService) -> None:
    config = page.config
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
            left_video = gr.Video(label="Left video (←)", autoplay=True, loop=True, height=300, interactive=False,
                                  elem_id="label-left-video")
            right_video = gr.Video(label="Right video (→)", autoplay=True, loop=True, height=300, interactive=False,
                                   elem_id="label-right-video")
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
            token_box = gr.Textbox(label="Token", visible=False)
            choice_box = gr.Textbox(label="Choice", visible=False)
            vote_trigger = gr.Button(visible=False)
        with gr.Accordion("Labelers, agreement and leaderboard", open=False) as stats_panel:
            stats_button = gr.Button("Refresh", size="sm")
            with gr.Row():
                progress_json = gr.JSON(label="Pool progress")
                agreement_json = gr.JSON(label="Agreement between labelers")
            sync_md = gr.Markdown(label="Hub sync", elem_id="label-sync")
            labelers_table = gr.Dataframe(label="Votes per labeler", interactive=False, wrap=True, elem_id="label-labelers")
            leaderboard_table = gr.Dataframe(label="Leaderboard of model versions", interactive=False, wrap=True,
                                             elem_id="label-leaderboard")
            leaderboard_md = gr.Markdown(elem_id="label-leaderboard-note")
        stats_timer = gr.Timer(STATS_EVERY_SECONDS, active=False)

    def show(labeler: str, state: SessionState, pair: dict | None, message: str = "", last_vote: dict | None = None):
        """The pair on screen, after next pair, vote or undo."""
        state.serve(pair)
        view = labeling.view(labeler, pair, message, last_vote, session_id=state.ensure_id())
        return {
            pair_json: view["pair"],
            left_video: view["left_video"],
            right_video: view["right_video"],
            prompt_md: f"### {view['headline']}",
            progress_md: view["counter"],
            page.state: state,
        }

    @handler(config)
    def next_pair(user: User, state: SessionState):
        """Serve the next pair to this labeler: the pair (with its token and prompt), both videos, prompt, progress."""
        labeler = require_labeler(config, user)
        return show(labeler, state, labeling.next_pair(labeler, state.ensure_id()))

    def record(user: User, token: str, choice: str, state: SessionState):
        labeler = require_labeler(config, user)
        token = text(token, "token") or state.pair_token
        choice = text(choice, "choice")
        if not token:
            raise ValueError("No pair on screen: press 'Next pair' first.")
        recorded = labeling.vote(labeler, state.ensure_id(), token, choice)
        return show(labeler, state, labeling.next_pair(labeler, state.session_id), last_vote=recorded)

    @handler(config)
    def vote(user: User, token: str, choice: str, state: SessionState):
        """Record left / right / tie / both_bad / skip on the pair served with token (empty: the pair on screen),
        then serve the next pair."""
        return record(user, token, choice, state)

    def vote_on_screen(choice: str):
        @handler(config)
        def vote_button(user: User, state: SessionState):
            return record(user, "", choice, state)

        return vote_button

    @handler(config)
    def undo(user: User, state: SessionState):
        """Undo your last vote of this session and show that pair again."""
        labeler = require_labeler(config, user)
        pair = labeling.undo(labeler, state.ensure_id())
        if pair is None:
            raise ValueError("Nothing to undo in this session.")
        return show(labeler, state, pair, message="Your last vote was undone: vote again.")

    @handler(config)
    def label_stats(user: User):
        """Pool progress, agreement, votes per labeler and the leaderboard (for labelers and maintainers); the Hub
        sync's state (last push, votes not pushed, last error) for maintainers."""
        require_stats_reader(config, user)
        stats = labeling.stats()
        return {
            progress_json: rounded(stats["progress"]),
            agreement_json: rounded(stats["agreement"]),
            sync_md: labeling.sync_summary() if user.maintainer else "",
            labelers_table: table(stats["labelers"]),
            leaderboard_table: table(stats["leaderboard"]),
            leaderboard_md: stats["leaderboard_note"],
        }

    def stats_while_open(labeler_name: str | None, profile: gr.OAuthProfile | None = None):
        """The open panel's periodic refresh: the stats for whoever may read them, silently nothing for others."""
        try:
            return label_stats(labeler_name, profile)
        except gr.Error:
            return {component: gr.skip() for component in stats_outputs}

    outputs = [pair_json, left_video, right_video, prompt_md, progress_md, page.state]
    next_button.click(next_pair, [page.name, page.state], outputs, api_name="next_pair", **limits)
    vote_trigger.click(vote, [page.name, token_box, choice_box, page.state], outputs, api_name="vote", **limits)
    for choice, button in buttons.items():
        button.click(vote_on_screen(choice), [page.name, page.state], outputs, api_visibility="private", **limits)
    undo_button.click(undo, [page.name, page.state], outputs, api_name="undo", **limits)
    stats_outputs = [progress_json, agreement_json, labelers_table, leaderboard_table, leaderboard_md, sync_md]
    stats_limits = {"concurrency_limit": 2, "concurrency_id": "stats"}
    stats_button.click(label_stats, [page.name], stats_outputs, api_name="label_stats", **stats_limits)
    # While the panel is open the stats follow the votes (everyone's): a refresh when it opens, then on a timer.
    stats_panel.expand(lambda: gr.Timer(active=True), None, stats_timer, api_visibility="private", queue=False)
    stats_panel.expand(stats_while_open, [page.name], stats_outputs, api_visibility="private", show_progress="hidden",
                       **stats_limits)
    stats_panel.collapse(lambda: gr.Timer(active=False), None, stats_timer, api_visibility="private", queue=False)
    stats_timer.tick(stats_while_open, [page.name], stats_outputs, api_visibility="private", show_progress="hidden",
                     **stats_limits)
