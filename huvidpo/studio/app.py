"""HuViDPO Studio, the Gradio app: ``build_demo()`` lays out the header and the tabs, ``main()`` serves it.

``python app.py`` (repository root) and the ``huvidpo-studio`` command both run ``main``. Named endpoints make
every action scriptable with ``gradio_client``: generate, send_to_pool, next_pair, vote, undo, label_stats,
start_training, training_status, cancel_training, push_lora.
"""

import os

# Gradio wraps every callback in a matplotlib backend switch; with the backend named, the first call does not
# import pyplot to find one (a second of CPU on a small machine). The server never opens a window.
os.environ.setdefault("MPLBACKEND", "agg")

import gradio as gr  # noqa: E402

from huvidpo.hub_calls import use_hub_timeouts  # noqa: E402
from huvidpo.locations import ASSETS_DIR  # noqa: E402
from huvidpo.studio.access import MAX_NAME_CHARS, User, role_text  # noqa: E402
from huvidpo.studio.cli import build_parser, config_from_args, main  # noqa: E402,F401 - the entry point's home
from huvidpo.studio.config import StudioConfig  # noqa: E402
from huvidpo.studio.generation import GenerationService  # noqa: E402
from huvidpo.studio.gpu_turns import GpuTurns  # noqa: E402
from huvidpo.studio.labeling import LabelingService  # noqa: E402
from huvidpo.studio.session import SessionState  # noqa: E402
from huvidpo.studio.tabs import build_generate_tab, build_label_tab, build_train_tab  # noqa: E402
from huvidpo.studio.tabs.label import KEYBOARD_SHORTCUTS  # noqa: E402
from huvidpo.studio.training import TrainingManager  # noqa: E402
from huvidpo.studio.ui import Page, handler  # noqa: E402


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
            "allowed_paths": [str(folder) for folder in config.served_dirs],
            "blocked_paths": [str(path) for path in config.blocked_paths],
            "max_file_size": config.max_upload_bytes,
        }

    def launch(self, *args, **kwargs):
        for key, value in self.launch_defaults.items():
            if kwargs.get(key) is None:
                kwargs[key] = value
        return super().launch(*args, **kwargs)


def build_demo(config: StudioConfig | None = None) -> gr.Blocks:
    """The studio as a Gradio Blocks app; the model loads once, in the background from here (or on first use)."""
    config = config or StudioConfig.from_env()
    use_hub_timeouts()  # every Hub call of the app (model downloads, vote sync, pushes) fails in bounded time
    config.make_dirs()
    gpu = GpuTurns(config)  # generation and training take turns on one GPU
    generation = GenerationService(config, gpu=gpu) if "generate" in config.tabs else None
    if generation is not None and config.preload_model:
        generation.start_loading()
    labeling = LabelingService(config) if "label" in config.tabs else None
    training = TrainingManager(config, labeling, gpu=gpu) if "train" in config.tabs else None

    with StudioBlocks(config, title="HuViDPO Studio") as demo:
        with gr.Row(equal_height=True, elem_id="studio-header"):
            # min_width: on a narrow screen the name box wraps below the title rather than squeezing it
            with gr.Column(scale=3, min_width=300):
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
                    name = gr.Textbox(label="Your name (for labeling)", placeholder="e.g. ada", elem_id="labeler-name", max_lines=1,
                                      max_length=MAX_NAME_CHARS)
                role_md = gr.Markdown(elem_id="studio-role")
        page = Page(config=config, demo=demo, name=name, state=gr.State(SessionState()))
        lora_box = None
        with gr.Tabs():
            if generation is not None:
                lora_box = build_generate_tab(page, generation, labeling)
            if labeling is not None:
                build_label_tab(page, labeling)
            if training is not None:
                build_train_tab(page, training, lora_box)
        gr.Markdown(f"Model: `{config.model_name}`", elem_id="studio-footer")

        @handler(config)
        def show_role(user: User):
            """Who the visitor is and what they may do, on load and as they type their name."""
            return {role_md: role_text(config, user)}

        demo.load(show_role, [name], [role_md], api_visibility="private", queue=False)
        name.change(show_role, [name], [role_md], api_visibility="private", queue=False, show_progress="hidden")
    demo.queue(max_size=config.max_queue, default_concurrency_limit=config.label_concurrency)
    demo.services = {"generation": generation, "labeling": labeling, "training": training}
    return demo
