"""The Generate tab: a prompt and settings in, a clip (or base and base + LoRA side by side) out, then "send to pool".

The sliders take their defaults and bounds from ``GenerationSettings`` and this app's limits from ``StudioConfig``;
the ``generate`` endpoint builds ``GenerationSettings`` from what was sent, so whatever a script leaves out takes
the same defaults.
"""

import json
import random

import gradio as gr

from huvidpo.generate import GenerationSettings
from huvidpo.locations import ASSETS_DIR
from huvidpo.studio.access import User, require_labeler
from huvidpo.studio.config import StudioConfig
from huvidpo.studio.generation import (
    MAX_PROMPT_CHARS,
    GeneratedClip,
    GenerationService,
    import_model_stack,
    list_loras,
    prompt_notes,
    reproduce_command,
    setting_range,
    vocabulary_text,
)
from huvidpo.studio.labeling import LabelingService
from huvidpo.studio.session import SessionState
from huvidpo.studio.ui import Page, checked_by_handler, flag, handler, image_input, text, whole

MAX_FIRST_FRAME_PIXELS = 16_000_000  # an uploaded first frame is decoded whole before it is resized


def load_examples(config: StudioConfig) -> list[list]:
    """Example rows (assets/examples.json) for the served model ("for": "embedded" rows for the embedded default,
    "real" rows for any other model): what an example leaves out takes the settings' default, clamped to this
    app's limits."""
    path = ASSETS_DIR / "examples.json"
    if not path.is_file():
        return []
    defaults = {"frames": config.default_frames, "steps": config.default_steps,
                "guidance": GenerationSettings.spec("guidance").default, "seed": GenerationSettings.spec("seed").default}
    served = "embedded" if config.serves_embedded_default else "real"
    rows = []
    for example in json.loads(path.read_text(encoding="utf-8")):
        if example.get("for", served) != served:
            continue
        values = {name: example.get(name, default) for name, default in defaults.items()}
        rows.append([
            example["prompt"],
            min(int(values["frames"]), config.max_frames),
            min(int(values["steps"]), config.max_steps),
            float(values["guidance"]),
            int(values["seed"]),
        ])
    return rows


def lora_choices(config: StudioConfig, maintainer: bool = False) -> list[tuple[str, str]]:
    """The LoRA picker's choices as they are now: the base model, then (for maintainers) trained runs, loras/
    and assets/."""
    return [("(base model)", ""), *((reference, reference) for reference in list_loras(config, maintainer))]


def setting_slider(page: Page, name: str, label: str, **kwargs) -> gr.Slider:
    """A slider over the range this app accepts for a ``GenerationSettings`` field, at its default unless given."""
    spec = GenerationSettings.spec(name)
    low, high = setting_range(name, page.config)
    kwargs.setdefault("value", spec.default)
    return checked_by_handler(gr.Slider(low, high, step=spec.metadata.get("step", 1), label=label, **kwargs))


def build_generate_tab(page: Page, generation: GenerationService, labeling: LabelingService | None) -> gr.Dropdown:
    """The tab's components and events; returns the LoRA picker (the Train tab refreshes it when a run ends)."""
    config = page.config
    limits = {"concurrency_limit": config.generate_concurrency, "concurrency_id": "generate"}
    seed_low, seed_high = setting_range("seed", config)
    with gr.Tab("Generate", id="generate"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                prompt_box = gr.Textbox(label="Prompt", lines=2, placeholder=config.suggested_prompts[0], elem_id="gen-prompt",
                                        max_length=MAX_PROMPT_CHARS)
                notes_md = gr.Markdown(elem_id="gen-prompt-notes")
                vocabulary = vocabulary_text(config)
                gr.Markdown(vocabulary, elem_id="gen-vocabulary", visible=bool(vocabulary))
                with gr.Row():
                    frames_slider = setting_slider(page, "frames", "Frames", value=config.default_frames)
                    steps_slider = setting_slider(page, "steps", "Denoising steps", value=config.default_steps)
                with gr.Row():
                    guidance_slider = setting_slider(page, "guidance", "Guidance", scale=2, min_width=220)
                    with gr.Column(scale=1, min_width=160, elem_id="gen-seed"), gr.Group():  # Random in the Seed box
                        seed_box = checked_by_handler(gr.Number(value=GenerationSettings.spec("seed").default, precision=0,
                                                                minimum=seed_low, maximum=seed_high, label="Seed"))
                        random_seed = gr.Button("Random", size="sm", elem_id="gen-random-seed")
                with gr.Accordion("LoRA", open=True):
                    with gr.Row():
                        lora_box = gr.Dropdown(
                            choices=lora_choices(config, config.local_maintainer), value="", allow_custom_value=True, scale=3,
                            label="LoRA: a trained run, a folder in loras/, or a Hub model id (empty: base model)",
                        )
                        lora_scale_slider = setting_slider(page, "lora_scale", "Scale", scale=2)
                    compare_box = gr.Checkbox(label="Compare: base and base + LoRA side by side, same seed", value=False)
                with gr.Accordion("More settings", open=False):
                    negative_box = gr.Textbox(label="Negative prompt (needs guidance > 1)", max_length=MAX_PROMPT_CHARS)
                    first_frame_box = image_input(label="First frame (optional: image-to-video)", type="pil",
                                                  sources=["upload", "clipboard"], height=200)
                    image_steps_slider = setting_slider(page, "image_steps", "First-frame model steps", value=config.default_steps)
                    sampler_spec = GenerationSettings.spec("sampler")
                    sampler_box = gr.Dropdown(
                        choices=list(sampler_spec.metadata["choices"]), value=sampler_spec.default, label="Sampler",
                        info="How frames are kept together. ours: shared noise that keeps unit variance, AdaIN once "
                             "at the end. huvidpo: the original paper's code (0.2·n0 + 0.8·n_f, AdaIN at every step, "
                             "colours matched to the first frame). The two settings below apply to either.",
                    )
                    with gr.Row():
                        shared_noise_slider = setting_slider(page, "shared_noise", "Shared noise across frames")
                        adain_box = gr.Checkbox(value=GenerationSettings.spec("adain").default,
                                                label="Match frame statistics to the first frame (AdaIN)")
                run = gr.Button("Generate", variant="primary", elem_id="gen-run")
            with gr.Column(scale=3, min_width=320):
                with gr.Row():
                    base_video_out = gr.Video(label="Base model", visible=False, autoplay=True, loop=True, height=320,
                                              elem_id="gen-base-video")
                    video_out = gr.Video(label="Video", autoplay=True, loop=True, height=320, elem_id="gen-video", interactive=False)
                with gr.Row(equal_height=False):
                    first_frame_out = gr.Image(label="First frame", height=160, interactive=False, scale=1)
                    with gr.Column(scale=2):
                        to_pool = gr.Button("Send to labeling pool", elem_id="gen-to-pool", visible=labeling is not None)
                        pool_md = gr.Markdown(label="pool message")
                with gr.Accordion("Settings to reproduce", open=False):
                    details_out = gr.JSON(label="Settings")
                    command_out = gr.Code(label="Command line", language="shell", interactive=False)
        examples = load_examples(config)
        if examples:
            gr.Examples(examples, inputs=[prompt_box, frames_slider, steps_slider, guidance_slider, seed_box],
                        label="Examples", examples_per_page=4)

    @handler(config)
    def generate(
        prompt: str, negative_prompt=None, first_frame=None, frames=None, steps=None, guidance=None, seed=None, lora=None,
        lora_scale=None, compare=None, image_steps=None, shared_noise=None, adain=None, sampler=None,
        state: SessionState = None, user: User = None, progress=gr.Progress(),
    ):
        """Generate a clip (or, with compare, base and base + LoRA with the same seed). Parameters left out take
        the page's defaults."""
        sent = {
            "negative_prompt": text(negative_prompt, "negative_prompt", max_chars=None),  # check_settings bounds it
            "frames": whole(frames, "frames", config.default_frames),
            "steps": whole(steps, "steps", config.default_steps),
            "guidance": guidance,
            "seed": whole(seed, "seed"),
            "lora": text(lora, "lora") or None,
            "lora_scale": lora_scale,
            "image_steps": whole(image_steps, "image_steps", config.default_steps),
            "shared_noise": shared_noise,
            "adain": flag(adain, "adain"),
            "sampler": text(sampler, "sampler") or None,  # GenerationSettings names the choices
        }
        compare = flag(compare, "compare")
        settings = GenerationSettings(prompt=text(prompt, "prompt", max_chars=None), **{k: v for k, v in sent.items() if v is not None})
        if first_frame is not None and first_frame.width * first_frame.height > MAX_FIRST_FRAME_PIXELS:
            raise ValueError(f"The first frame is {first_frame.width}x{first_frame.height} pixels; upload one of at most "
                             f"{MAX_FIRST_FRAME_PIXELS // 1_000_000} megapixels (it is resized to the model's size anyway).")
        image = first_frame.convert("RGB") if first_frame is not None else None
        import_model_stack()

        def on_step(step: int, total: int) -> None:
            progress((step, total), desc="Denoising", unit="steps")

        progress(0, desc="Starting")
        if compare and settings.lora:
            clips = list(generation.compare(settings, image, on_step, user.maintainer))
        else:
            if compare:
                gr.Warning("Compare needs a LoRA: showing the base model only.")
            clips = [generation.generate(settings, image, on_step, user.maintainer)]
        state.last_clips = [clip.to_dict() for clip in clips]
        main = clips[-1]
        notes = prompt_notes(settings.prompt, config)
        for note in notes:  # gentle: the clip is made anyway (a larger model knows more words)
            gr.Warning(note, title="Unknown word")
        return {
            video_out: str(main.video),
            base_video_out: str(clips[0].video) if len(clips) == 2 else None,
            first_frame_out: str(main.first_frame),
            details_out: {"settings": main.settings, "seconds": main.seconds, "clips": len(clips), "notes": notes},
            command_out: reproduce_command(main.settings, config, main, server_paths=user.maintainer),
            pool_md: "",
            page.state: state,
        }

    inputs = [prompt_box, negative_box, first_frame_box, frames_slider, steps_slider, guidance_slider, seed_box, lora_box,
              lora_scale_slider, compare_box, image_steps_slider, shared_noise_slider, adain_box, sampler_box, page.state,
              page.name]
    outputs = [video_out, base_video_out, first_frame_out, details_out, command_out, pool_md, page.state]
    generated = gr.on([run.click, prompt_box.submit], generate, inputs, outputs, api_name="generate", **limits)

    def show_compare(details: dict | None):
        """Compare mode shows the base model's clip next to the LoRA's."""
        compared = bool(details) and details.get("clips") == 2
        return {video_out: gr.update(label="Base + LoRA" if compared else "Video"), base_video_out: gr.update(visible=compared)}

    generated.success(show_compare, details_out, [video_out, base_video_out], api_visibility="private", queue=False)

    def show_notes(prompt: str):
        """As the prompt is typed: which of its words the served model will not draw."""
        return {notes_md: "\n\n".join(f"⚠ {note}" for note in prompt_notes(prompt, config))}

    prompt_box.change(show_notes, prompt_box, notes_md, api_visibility="private", queue=False, show_progress="hidden",
                      trigger_mode="always_last")
    random_seed.click(lambda: {seed_box: random.randint(seed_low, seed_high)}, None, [seed_box], queue=False,
                      api_visibility="private")
    @handler(config)
    def show_loras(user: User):
        """The LoRAs this visitor may pick (maintainers also see the trained runs)."""
        return {lora_box: gr.Dropdown(choices=lora_choices(config, user.maintainer))}

    page.demo.load(show_loras, [page.name], [lora_box], api_visibility="private", queue=False)

    if labeling is not None:

        @handler(config)
        def send_to_pool(user: User, state: SessionState):
            """Add the clip(s) of this session's last generation to the labeling pool."""
            require_labeler(config, user)
            if not state.last_clips:
                raise ValueError("Generate a clip first, then send it to the pool.")
            return {pool_md: labeling.send_to_pool([GeneratedClip.from_dict(clip) for clip in state.last_clips])}

        to_pool.click(send_to_pool, [page.name, page.state], [pool_md], api_name="send_to_pool",
                      concurrency_limit=config.label_concurrency, concurrency_id="label")
    return lora_box
