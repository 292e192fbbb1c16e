"""Who may do what: visitors generate, labelers vote, maintainers train and push; and the line that tells them.

Checked in the Python callbacks, never only by hiding buttons. Identity:
- With Hugging Face sign-in (``config.oauth``, on by default on a Space) the name is the OAuth username,
  and maintainers are the usernames in ``config.maintainers``. A typed name is ignored, so nobody can
  label or train as someone else.
- Locally the labeler types a name, and maintainer rights are a flag of the whole app (``--maintainer``):
  typed names prove nothing, so they never grant rights.
"""

from __future__ import annotations

from dataclasses import dataclass

from huvidpo.studio.config import StudioConfig


MAX_NAME_CHARS = 64


class AccessError(ValueError):
    """The user may not do this; the message says who may, and how to get there."""


@dataclass(frozen=True)
class User:
    """The person behind one request."""

    name: str = ""
    signed_in: bool = False
    maintainer: bool = False

    @property
    def role(self) -> str:
        if self.maintainer:
            return "maintainer"
        return "labeler" if self.name else "visitor"


def resolve_user(config: StudioConfig, oauth_username: str | None, typed_name: str | None) -> User:
    """The user of a request from the OAuth profile's username (or None) and the name typed in the page."""
    if config.oauth:
        if not oauth_username:
            return User()
        return User(name=oauth_username, signed_in=True, maintainer=oauth_username.lower() in config.maintainers)
    name = typed_name.strip() if isinstance(typed_name, str) else ""
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"Your name is {len(name)} characters long; keep it to {MAX_NAME_CHARS} (votes are recorded under it).")
    return User(name=name, maintainer=config.local_maintainer)


def require_labeler(config: StudioConfig, user: User) -> str:
    """The labeler's name, or an AccessError saying how to get one."""
    if user.name:
        return user.name
    if config.oauth:
        raise AccessError("Sign in with Hugging Face (button at the top) to label: votes are recorded under your username.")
    raise AccessError("Type your name at the top of the page first: votes are recorded under it.")


def require_stats_reader(config: StudioConfig, user: User) -> None:
    """Labelers and maintainers see the stats (who voted how often, agreement, leaderboard); visitors do not."""
    if not user.maintainer:
        require_labeler(config, user)


def require_maintainer(config: StudioConfig, user: User, action: str = "Training") -> None:
    """Raise an AccessError unless ``user`` is a maintainer."""
    if user.maintainer:
        return
    if config.oauth:
        who = f"signed in as {user.name}" if user.name else "not signed in"
        raise AccessError(
            f"{action} is for maintainers: you are {who}. Maintainers are the Hugging Face users listed in "
            "HUVIDPO_MAINTAINERS (a Space variable)."
        )
    raise AccessError(f"{action} is for maintainers: start the app with --maintainer on your own machine to train and push.")


def role_text(config: StudioConfig, user: User) -> str:
    """One line under the name box: who you are and what you may do."""
    if config.oauth and not user.name:
        return "Visitor: sign in to label."
    if not user.name:
        return "Maintainer (local): type a name to label." if user.maintainer else "Visitor: type a name to label."
    rights = {"maintainer": "generate, label, train and push", "labeler": "generate and label"}[user.role]
    return f"**{user.name}** · {user.role}: you can {rights}."
