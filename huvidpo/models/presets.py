"""Named sets of the VideoUNet's video options: ours, and the original LAMP and HuViDPO models.

What is unusual here: a preset is nothing but config keys. ``VideoUNet.from_unet2d(unet, preset="lamp")``
and ``huvidpo.convert --preset lamp`` expand it into the model's config, so a saved model records every
option it runs with and loads the same without knowing which preset made it. The original models'
behaviours (checked numerically against their code on ``shared/fixtures/lamp-tiny``):

=======================  ===========================  ===========================  ==========================
option                   ``ours`` (the default)        ``huvidpo``                  ``lamp``
=======================  ===========================  ===========================  ==========================
temporal_convs           ``"resnet"``: ResNet conv1,    ``"all"``: also conv_in,     ``"all"``
                         conv2                          conv_out, conv_shortcut,
                                                        down/upsampler convs
group_norm               ``"per_frame"``                ``"per_video"`` (ResNet      ``"per_video"``
                                                        norms, conv_norm_out)
temporal_position_code   True                           False                        False
sparse_causal            ``"first_and_previous"``       ``"first_and_previous"``     ``"first"``
temporal_gate            ``"spatial"``                  ``"spatial"``                ``"spatial"``
temporal_kernel_size     3                              3                            3
=======================  ===========================  ===========================  ==========================
"""

from __future__ import annotations

OURS = "ours"
VIDEO_UNET_PRESETS: dict[str, dict] = {
    OURS: dict(
        temporal_convs="resnet",
        group_norm="per_frame",
        temporal_position_code=True,
        sparse_causal="first_and_previous",
        temporal_gate="spatial",
        temporal_kernel_size=3,
    ),
    "huvidpo": dict(
        temporal_convs="all",
        group_norm="per_video",
        temporal_position_code=False,
        sparse_causal="first_and_previous",
        temporal_gate="spatial",
        temporal_kernel_size=3,
    ),
    "lamp": dict(
        temporal_convs="all",
        group_norm="per_video",
        temporal_position_code=False,
        sparse_causal="first",
        temporal_gate="spatial",
        temporal_kernel_size=3,
    ),
}
VIDEO_OPTIONS = tuple(VIDEO_UNET_PRESETS[OURS])


def video_unet_options(preset: str = OURS, **overrides) -> dict:
    """The video options of ``preset``, with ``overrides`` (any of :data:`VIDEO_OPTIONS`) on top."""
    if preset not in VIDEO_UNET_PRESETS:
        raise ValueError(f"Unknown VideoUNet preset {preset!r}: use one of {list(VIDEO_UNET_PRESETS)}.")
    unknown = sorted(set(overrides) - set(VIDEO_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown VideoUNet option(s) {unknown}: the video options are {list(VIDEO_OPTIONS)}.")
    return {**VIDEO_UNET_PRESETS[preset], **overrides}
