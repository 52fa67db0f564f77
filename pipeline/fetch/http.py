"""HTTP for the Google APIs: bounded requests, and retries with backoff and jitter.

Every request has a connect and a read timeout and a bound on the bytes of its
response. A 429, a 5xx or a connection failure is retried with exponential
backoff and full jitter, at most ``attempts`` times in all; a ``Retry-After``
header is honoured (it sets the least wait) unless it asks for more than
``max_retry_after`` seconds, which ends the request with an error. Any other
status is an error at once, with the message Google's error body gives.
"""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import requests

RETRYABLE = frozenset({429, 500, 502, 503, 504})
# An API key in a URL that an exception's message repeats (requests names the URL).
_KEY_IN_URL = re.compile(r"([?&](?:key|access_token)=)[^&\s'\"]+")


def redact(text: str) -> str:
    return _KEY_IN_URL.sub(r"\1REDACTED", text)


class FetchError(Exception):
    """A request that failed for good: after its retries, or at once for a client error."""

    def __init__(self, message: str, *, status: int | None = None, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # requests in all, the first one included
    base_seconds: float = 1.0  # the backoff before retry n is drawn from [0, base x 2^(n-1)]
    max_seconds: float = 32.0  # cap of the backoff draw
    max_retry_after: float = 300.0  # a longer Retry-After ends the request

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_seconds < 0 or self.max_seconds < 0:
            raise ValueError("backoff seconds must be >= 0")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Seconds before retry ``retry`` (1-based): full jitter over the exponential cap."""
        return rng.uniform(0.0, min(self.max_seconds, self.base_seconds * 2 ** (retry - 1)))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in seconds from now; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_message(status: int, content: bytes) -> tuple[str, object]:
    """Google's error body ``{"error": {"code", "message", "status"}}`` as one line."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content[:200].decode("utf-8", "replace").strip()
        return f"HTTP {status}" + (f": {text}" if text else ""), None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [f"HTTP {status}"]
        if error.get("status"):
            parts.append(str(error["status"]))
        message = " ".join(parts)
        if error.get("message"):
            message += f": {error['message']}"
        return message, body
    return f"HTTP {status}", body


@dataclass
class Client:
    """JSON over HTTPS with the bounds and the retry policy above.

    One ``requests.Session`` per thread (sessions are not shared across threads).
    ``headers`` is called before each attempt, so a token refreshed in between is used.
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_response_bytes: int = 64 << 20
    headers: Callable[[], dict[str, str]] = dict
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    log: Callable[[str], None] | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: dict | None = None,
        json: object = None,
        label: str | None = None,
    ) -> dict:
        """The decoded JSON object of a 2xx response; FetchError when it fails for good."""
        label = label or url
        last = ""
        for attempt in range(1, self.policy.attempts + 1):
            try:
                status, headers, content = self._send(method, url, params, json)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                last = redact(f"{type(exc).__name__}: {exc}")
                wait = None
            except requests.RequestException as exc:
                raise FetchError(redact(f"{label}: {type(exc).__name__}: {exc}")) from None
            else:
                if 200 <= status < 300:
                    try:
                        body = orjson.loads(content)
                    except orjson.JSONDecodeError as exc:
                        raise FetchError(f"{label}: response is not JSON ({exc})") from None
                    if not isinstance(body, dict):
                        raise FetchError(f"{label}: response is not a JSON object")
                    return body
                message, body = error_message(status, content)
                if status not in RETRYABLE:
                    raise FetchError(f"{label}: {message}", status=status, body=body)
                last = message
                wait = retry_after_seconds(headers.get("Retry-After"))
                if wait is not None and wait > self.policy.max_retry_after:
                    raise FetchError(
                        f"{label}: {message}; Retry-After {wait:.0f} s is more than "
                        f"{self.policy.max_retry_after:.0f} s",
                        status=status,
                        body=body,
                    )
            if attempt == self.policy.attempts:
                break
            delay = self.policy.backoff(attempt, self.rng)
            if wait is not None:
                delay = max(delay, wait)
            if self.log:
                self.log(f"{label}: {last}; retry {attempt} in {delay:.1f} s")
            self.sleep(delay)
        raise FetchError(f"{label}: {last} (gave up after {self.policy.attempts} attempts)")

    def _send(self, method, url, params, json) -> tuple[int, dict, bytes]:
        headers = {"Accept": "application/json", "Accept-Encoding": "gzip", **self.headers()}
        data = None
        if json is not None:
            data = orjson.dumps(json)
            headers["Content-Type"] = "application/json"
        with self.session().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=(self.connect_timeout, self.read_timeout),
            stream=True,
        ) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise FetchError(self._too_large(url), status=response.status_code)
            chunks, size = [], 0
            deadline = time.monotonic() + self.read_timeout
            for chunk in response.iter_content(1 << 16):
                if time.monotonic() > deadline:  # read_timeout bounds each read; this, all
                    raise requests.Timeout(f"response not complete after {self.read_timeout} s")
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise FetchError(self._too_large(url), status=response.status_code)
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    def _too_large(self, url: str) -> str:
        return f"{url}: response larger than {self.max_response_bytes:,} bytes"
