"""The console's reads of the tracker's internal API (services/tracker/api.py), with the internal credential.

Path segments are fixed names and alert ids the caller validated (services/common/internal.is_alert_id);
query values are quoted by yarl, never spliced into the URL. An answer other than 200, 304, 403 or 404 is
the deployment's fault (a wrong internal token is a 401): logged, and the caller shows the tracker as
unavailable.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from pydantic import SecretStr
from yarl import URL

from services.common.internal import bearer
from services.common.logs import get_logger

log = get_logger("rctc.console")


class TrackerUnavailable(Exception):
    pass


def internal_url(base: URL, segments: tuple[str, ...], params: dict[str, str]) -> URL:
    """The URL of GET /internal/<segments>?<params>, each segment one path segment whatever it holds.

    yarl's joinpath splits a segment at "/" and resolves "." and "..", so an unchecked alert id such as
    "../webhooks" would reach another route of the internal API with the console's credential. The callers
    validate alert ids; this refuses what would escape anyway, so one missed check cannot become a request
    the console never meant (ValueError: a bug of the caller's, not the tracker's).
    """
    for segment in segments:
        if not segment or segment in (".", "..") or any(c in segment for c in "/\\?#%"):
            raise ValueError(f"not one path segment: {segment!r}")
    return base.joinpath("internal", *segments).with_query(params)


class TrackerClient:
    TIMEOUT_S = 5.0

    def __init__(self, url: str, token: SecretStr) -> None:
        self._url = URL(url)
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            headers=bearer(self._token), timeout=aiohttp.ClientTimeout(total=self.TIMEOUT_S)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self, segments: tuple[str, ...], params: dict[str, str], etag: str | None = None
    ) -> tuple[int, Any, str | None]:
        """(status, JSON body or None for a 304, ETag) of GET /internal/<segments>; TrackerUnavailable else."""
        assert self._session is not None, "start() first"
        url = internal_url(self._url, segments, params)
        headers = {"If-None-Match": etag} if etag else {}
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status == 304:
                    return 304, None, etag
                if response.status not in (200, 403, 404):
                    log.error("tracker.refused", path=url.path, status=response.status)
                    raise TrackerUnavailable(f"the tracker answered {response.status}")
                return response.status, await response.json(), response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("tracker.unavailable", path=url.path, error=repr(exc))
            raise TrackerUnavailable("the tracker did not answer") from exc
