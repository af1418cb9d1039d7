from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.internal import InternalToken
from services.common.settings import Section, ServiceSettings


class ConsoleHttpSettings(Section):
    """The console's pages. Loopback by default: a center serves it on its operators' network only (behind
    its TLS terminator), never where agencies reach, since every page shows every agency's alerts."""

    host: str = "127.0.0.1"
    port: int = 8090


class SessionSettings(Section):
    # An operator away from the wall screen for this long logs in again; nobody stays in for longer than
    # max_s whatever they do. Sessions live in the process: a restart logs everyone out, which is the
    # conservative failure for a screen that shows everything.
    idle_s: float = 30 * 60
    max_s: float = 12 * 3600
    limit: int = 1_000
    # Secure cookies under the __Host- prefix (HTTPS only, this host only, path /). Browsers count loopback
    # as secure, so this holds on a developer's machine too; off only behind a plain-HTTP proxy in a lab.
    secure_cookie: bool = True


class ConsoleSettings(ServiceSettings):
    http: ConsoleHttpSettings = Field(default_factory=ConsoleHttpSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    # Alert states come from the tracker, which owns them (its internal API, with the internal credential).
    tracker_url: str = "http://127.0.0.1:8085"
    internal_token: InternalToken = Field(default=SecretStr(""), validate_default=True)
    # How often a live page checks for changes (one shared poll of the tracker for "now", an ETag makes an
    # unchanged answer a 304), and how often the slower views (lag, endpoints) are read again.
    refresh_s: float = 1.0
    slow_refresh_s: float = 5.0
    # At most this many alerts on "now" (those still awaiting an acknowledgement, most recent first).
    board_limit: int = 200
    # When those fill the board, each agency's newest this many too, so one agency's flood hides nobody else's.
    board_origin_limit: int = 20
    # Alert contents kept for the pages (title, category, TLP, priority): at most this many, of at most this
    # far back (alerts.enriched is read from there at start).
    contents_limit: int = 50_000
    contents_history_s: float = 7 * 24 * 3600
