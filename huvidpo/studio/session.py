"""Per-browser-session state: small, deep-copyable, no models or locks (those live in the services)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SessionState:
    """What one browser tab (or one ``gradio_client.Client``) carries between events.

    ``session_id`` is made on first use, not at construction: Gradio deep-copies the initial state for
    every session, so an id made here would be shared by all of them.
    """

    session_id: str = ""
    pair_token: str = ""
    last_clips: list[dict[str, Any]] = field(default_factory=list)

    def ensure_id(self) -> str:
        if not self.session_id:
            self.session_id = uuid.uuid4().hex
        return self.session_id

    def serve(self, pair: dict[str, Any] | None) -> None:
        """Remember the pair on screen (None: nothing left to judge): the buttons vote on it."""
        self.pair_token = pair["token"] if pair else ""
