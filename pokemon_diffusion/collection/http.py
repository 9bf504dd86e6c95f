"""HTTP for the web sources: one ``requests.Session`` that is robust and polite.

* every request has a timeout (connect and read);
* urllib3 ``Retry`` retries connection errors, read timeouts and HTTP 429 / 5xx answers with
  exponential backoff, and honours ``Retry-After`` (capped, so a server cannot park us for hours);
* a descriptive ``User-Agent`` says who is asking;
* a polite delay spaces consecutive requests made through one :class:`HttpClient`;
* bodies are streamed and cut off at ``max_bytes`` (the ``Content-Length`` header is checked first,
  and the decoded byte count after, so a gzip bomb is bounded too);
* every failure becomes a :class:`FetchError` (a :class:`~pokemon_diffusion.errors.ScrapeError`)
  that names the URL and the cause; a Cloudflare challenge or a 403 on a page becomes a
  :class:`BlockedError` that suggests the offline source.

Example:
    >>> with HttpClient(timeout=10, delay=1.0) as client:          # doctest: +SKIP
    ...     page = client.get_page("https://bulbapedia.bulbagarden.net/wiki/...")
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .._version import __version__
from ..errors import ScrapeError

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = (
    f"pokemon-diffusion/{__version__} (research dataset builder for a text-conditioned diffusion "
    f"model; polite: one request at a time with a delay; python-requests/{requests.__version__})"
)
RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_BACKOFF_FACTOR = 0.5
DEFAULT_RETRY_AFTER_MAX = 120
MAX_PAGE_BYTES = 20_000_000
_CHUNK = 64 * 1024
# What a Cloudflare "managed challenge" page looks like (header first, then body markers).
_CHALLENGE_MARKERS = ("Just a moment...", "challenge-platform", "cf-chl", "cf_chl", "Attention Required!")


class FetchError(ScrapeError):
    """A URL could not be fetched: HTTP error after retries, timeout, connection error, too large.

    Attributes:
        url: the URL asked for.
        status: the HTTP status received, or None when no response came.
        reason: a short cause, e.g. ``"HTTP 404 Not Found"`` or ``"timed out after 5 s"``.
    """

    def __init__(self, url: str, reason: str, status: Optional[int] = None):
        super().__init__(f"GET {url} failed: {reason}")
        self.url = url
        self.reason = reason
        self.status = status


class BlockedError(FetchError):
    """The site refused us as a bot (Cloudflare challenge or HTTP 403): retrying now will not help."""


@dataclass(frozen=True)
class Page:
    """A fetched HTML page: the final URL (after redirects), raw bytes and the declared charset."""

    url: str
    content: bytes
    encoding: Optional[str] = None


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host (not ``file:``, ``data:``, ``javascript:``...)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def check_http_url(url: str) -> str:
    """Return ``url`` when it is an absolute http(s) URL with a host.

    Raises:
        FetchError: any other scheme (``file:``, ``data:``, ``javascript:``, ``ftp:``...) or no host.
    """
    if not is_http_url(url):
        scheme = urlsplit(url).scheme or "none"
        raise FetchError(url, f"not an http(s) URL (scheme {scheme!r}); allowed: http://, https://")
    return url


def make_retry(retries: int, *, backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
               retry_after_max: int = DEFAULT_RETRY_AFTER_MAX) -> Retry:
    """The urllib3 retry policy: ``retries`` tries each for connect, read and status errors.

    ``raise_on_status=False`` hands back the last 429/5xx response after the last retry, so the
    caller can say which status it was instead of a bare "too many retries".
    """
    kwargs = dict(
        total=None, connect=retries, read=retries, status=retries, other=0, redirect=10,
        allowed_methods=frozenset({"GET", "HEAD"}), status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor, backoff_max=60, respect_retry_after_header=True,
        raise_on_status=False,
    )
    try:
        return Retry(retry_after_max=retry_after_max, **kwargs)
    except TypeError:  # urllib3 < 2.4 has no cap on Retry-After
        return Retry(**kwargs)


def make_session(*, retries: int = 5, backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
                 retry_after_max: int = DEFAULT_RETRY_AFTER_MAX, user_agent: str = DEFAULT_USER_AGENT,
                 trust_env: bool = True) -> requests.Session:
    """A ``requests.Session`` with the retry policy mounted for http and https and our User-Agent.

    Args:
        retries: retries per request for connection errors, read timeouts and 429/5xx answers.
        backoff_factor: urllib3 exponential backoff factor (sleep ``factor * 2 ** (n - 1)``).
        retry_after_max: the longest ``Retry-After`` (seconds) that is honoured as given.
        user_agent: the ``User-Agent`` header.
        trust_env: read proxies and certificates from the environment (requests' default).
    """
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=make_retry(retries, backoff_factor=backoff_factor,
                                                 retry_after_max=retry_after_max))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"})
    session.trust_env = trust_env
    return session


def challenge_cause(response: requests.Response, body_start: bytes = b"") -> Optional[str]:
    """Why a response looks like a bot block, or None.

    Args:
        response: the response (status and headers are read).
        body_start: the first bytes of the body, searched for Cloudflare's challenge markers.
    """
    if response.status_code not in (403, 429, 503):
        return None
    text = body_start[:200_000].decode("utf-8", "replace")
    if (response.headers.get("cf-mitigated", "").lower() == "challenge"
            or any(marker in text for marker in _CHALLENGE_MARKERS)):
        return "a Cloudflare challenge page ('Just a moment...')"
    if response.status_code == 403:
        return "HTTP 403 Forbidden"
    return None


def _describe(exc: requests.RequestException, timeout: float) -> str:
    """A short human cause for a requests exception (digging through urllib3's MaxRetryError)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = f"{exc} {reason or ''}".lower()
    if isinstance(exc, requests.Timeout) or "timed out" in text or "timeout" in text:
        return f"timed out (timeout {timeout:g} s per connect/read)"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error ({reason or exc})"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed ({reason or exc})"
    return f"{type(exc).__name__} ({exc})"


class HttpClient:
    """One session, one request at a time, with a timeout, retries and a polite delay.

    Args:
        timeout: seconds allowed to connect and for each read.
        delay: least seconds between the starts of two requests made through this client.
        retries: retries per request (see :func:`make_session`).
        backoff_factor: urllib3 backoff factor; tests use 0 to stay fast.
        user_agent: the ``User-Agent`` header.
        session: use this session instead of building one (it is not closed by :meth:`close`).
        trust_env: passed to :func:`make_session`.
        sleep, clock: injectable for tests; default ``time.sleep`` and ``time.monotonic``.
    """

    def __init__(self, *, timeout: float = 30.0, delay: float = 1.0, retries: int = 5,
                 backoff_factor: float = DEFAULT_BACKOFF_FACTOR, user_agent: str = DEFAULT_USER_AGENT,
                 session: Optional[requests.Session] = None, trust_env: bool = True,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.timeout = float(timeout)
        self.delay = float(delay)
        self.retries = int(retries)
        self._owns_session = session is None
        self.session = session or make_session(retries=retries, backoff_factor=backoff_factor,
                                               user_agent=user_agent, trust_env=trust_env)
        self._sleep = sleep
        self._clock = clock
        self._last_start: Optional[float] = None
        self.requests_made = 0

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait_politely(self) -> None:
        if self._last_start is not None and self.delay > 0:
            remaining = self.delay - (self._clock() - self._last_start)
            if remaining > 0:
                self._sleep(remaining)
        self._last_start = self._clock()

    def _open(self, url: str) -> requests.Response:
        """GET ``url`` streaming; retries happen inside the session's adapter."""
        check_http_url(url)
        self._wait_politely()
        self.requests_made += 1
        log.debug("GET %s", url)
        try:
            return self.session.get(url, timeout=(self.timeout, self.timeout), stream=True)
        except requests.RequestException as exc:
            raise FetchError(url, f"{_describe(exc, self.timeout)} after {self.retries} retries") from None

    def _read(self, response: requests.Response, url: str, max_bytes: int) -> bytes:
        """The decoded body, refused as soon as it passes ``max_bytes``."""
        declared = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if declared.isdigit() and int(declared) > max_bytes and not encoded:
            raise FetchError(url, f"too large: Content-Length {int(declared):,} bytes; "
                                  f"allowed: at most {max_bytes:,} (--max-bytes)", response.status_code)
        body = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(url, f"too large: more than {max_bytes:,} bytes; "
                                          f"allowed: at most {max_bytes:,} (--max-bytes)", response.status_code)
        except requests.RequestException as exc:
            raise FetchError(url, f"body incomplete: {_describe(exc, self.timeout)}") from None
        return bytes(body)

    def _fail_status(self, response: requests.Response, url: str, *, page: bool) -> None:
        """Raise for a non-2xx response; a bot block becomes a :class:`BlockedError`."""
        if response.ok:
            return
        start = b""
        try:
            start = next(response.iter_content(200_000), b"")
        except requests.RequestException:
            pass
        status = f"HTTP {response.status_code} {response.reason or ''}".strip()
        cause = challenge_cause(response, start)
        if cause and (page or "Cloudflare" in cause):
            raise BlockedError(url, f"{status}: the site answered with {cause}. Bulbapedia sits behind "
                                    f"Cloudflare, which blocks automated clients at times; wait and retry "
                                    f"with a larger --delay, or use --source pokedex (offline, 1,008 images)",
                               response.status_code)
        tries = f" after {self.retries} retries" if response.status_code in RETRY_STATUSES else ""
        raise FetchError(url, f"{status}{tries}", response.status_code)

    def get_page(self, url: str, *, max_bytes: int = MAX_PAGE_BYTES) -> Page:
        """Fetch an HTML page.

        Returns:
            The :class:`Page` (final URL after redirects, bytes, charset from the header if any).

        Raises:
            BlockedError: Cloudflare challenge or 403.
            FetchError: any other failure.
        """
        with self._open(url) as response:
            self._fail_status(response, url, page=True)
            content = self._read(response, url, max_bytes)
            charset = requests.utils.get_encoding_from_headers(response.headers)
            # requests defaults text/* without a charset to ISO-8859-1; let the parser sniff instead.
            if charset and charset.lower() == "iso-8859-1" and "charset" not in response.headers.get(
                    "Content-Type", "").lower():
                charset = None
            return Page(url=response.url or url, content=content, encoding=charset)

    def get_bytes(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch a (binary) resource of at most ``max_bytes`` bytes.

        Raises:
            BlockedError: a Cloudflare challenge page instead of the file.
            FetchError: HTTP error after retries, timeout, connection error or too large a body.
        """
        with self._open(url) as response:
            self._fail_status(response, url, page=False)
            return self._read(response, url, max_bytes)
