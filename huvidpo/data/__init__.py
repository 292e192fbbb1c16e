"""Data: video I/O (H.264 mp4 that browsers play, exact-frame-count reading, previews) and the readers of public
preference datasets (:mod:`huvidpo.data.preferences`)."""

from .video import VideoInfo, probe_video, read_video, to_uint8_frames, write_preview, write_video

__all__ = ["VideoInfo", "probe_video", "read_video", "to_uint8_frames", "write_preview", "write_video"]
