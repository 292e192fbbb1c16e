"""Per-browser-session state: small, deep-copyable, no models or locks (those live in the services)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SessionState:
    """What one browser tab (or one ``gradio_client.Client``) carries between events.

    ``session_id`` is made on first use, not at construction: Gradio deep-copies the initial state for
    every session, so an id made here would be shared by all of them.
    """

    session_id: str = ""
    labeler: str = ""
    pair_token: str = ""
    pair: dict[str, Any] | None = None
    last_clips: list[dict[str, Any]] = field(default_factory=list)
    votes: int = 0

    def ensure_id(self) -> str:
        if not self.session_id:
            self.session_id = uuid.uuid4().hex
        return self.session_id

    def serve(self, labeler: str, pair: dict[str, Any] | None) -> None:
        """Remember the pair on screen (None: nothing left to judge)."""
        self.labeler = labeler
        self.pair = pair
        self.pair_token = pair["token"] if pair else ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
