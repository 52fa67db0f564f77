"""PageSpeed Insights v5: ``runPagespeed`` for each URL and strategy into an NDJSON file.

Requests run on at most ``concurrency`` threads. Each response is written as one
line, in the order of the requests, as the API returned it. A request that fails
for good (after the retries of ``http.Client``, or at once for a client error) is
recorded and does not stop the others: its line holds the API's error object (or
one made from the status and message) with the URL as ``id``, so that ingesting
the file keeps it as a reject with its message.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from .http import Client, FetchError

STRATEGIES = ("mobile", "desktop")


@dataclass
class Failure:
    url: str
    strategy: str
    reason: str


@dataclass
class RunResult:
    path: str
    requested: int = 0
    succeeded: int = 0
    runtime_errors: int = 0  # 200 responses whose Lighthouse run failed
    failures: list[Failure] = field(default_factory=list)


def run_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/pagespeedonline/v5/runPagespeed"


def check_urls(urls: list[str], max_urls: int, max_chars: int = 2048) -> list[str]:
    """The URLs to measure, in order, without repeats; ValueError names a bad one."""
    out: list[str] = []
    for url in urls:
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an absolute http(s) URL: {url!r}")
        if len(url) > max_chars:
            raise ValueError(f"URL longer than {max_chars} characters: {url[:80]}...")
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("no URL given")
    if len(out) > max_urls:
        raise ValueError(f"{len(out)} URLs, more than the limit of {max_urls}")
    return out


def check_strategies(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(s.strip().lower() for s in text.split(",") if s.strip()))
    bad = [s for s in items if s not in STRATEGIES]
    if not items or bad:
        raise ValueError(f"strategies are a comma-separated subset of {','.join(STRATEGIES)}")
    return items


def fetch_runs(
    client: Client,
    *,
    base_url: str,
    urls: list[str],
    strategies: tuple[str, ...],
    output: str,
    key: str | None,
    concurrency: int,
) -> RunResult:
    """One PSI run per (URL, strategy) into ``output``; failures recorded in the result."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    endpoint = run_url(base_url)
    jobs = [(url, strategy) for url in urls for strategy in strategies]
    result = RunResult(output, requested=len(jobs))

    def run(job: tuple[str, str]) -> tuple[str, str, dict | None, FetchError | None]:
        url, strategy = job
        params = {"url": url, "strategy": strategy, "category": "performance"}
        if key:
            params["key"] = key
        try:
            body = client.request_json("GET", endpoint, params=params, label=f"{url} ({strategy})")
        except FetchError as exc:
            return url, strategy, None, exc
        return url, strategy, body, None

    def in_order():
        """Results in request order; at most 2 x concurrency runs submitted and not yet
        written, so the responses held in memory stay bounded."""
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for job in jobs:
                pending.append(pool.submit(run, job))
                if len(pending) >= 2 * concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    tmp = output + ".part"
    try:
        with open(tmp, "wb") as out:
            for url, strategy, body, error in in_order():
                if error is not None:
                    result.failures.append(Failure(url, strategy, str(error)))
                    body = _error_record(url, strategy, error)
                else:
                    result.succeeded += 1
                    if (body.get("lighthouseResult") or {}).get("runtimeError"):
                        result.runtime_errors += 1
                out.write(orjson.dumps(body) + b"\n")
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return result


def _error_record(url: str, strategy: str, error: FetchError) -> dict:
    """The failure as a PSI error response: the API's own error object when it sent one."""
    body = error.body if isinstance(error.body, dict) else {}
    api_error = body.get("error") if isinstance(body.get("error"), dict) else None
    if api_error is None:
        api_error = {"code": error.status or 0, "message": str(error)}
    else:
        api_error = {**api_error, "message": str(error)}
    return {"id": url, "strategy": strategy, "error": api_error}
