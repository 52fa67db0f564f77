"""A local stand-in for the Google endpoints ``manage.py fetch`` calls, on a real socket.

It serves what the real ones serve, in their shapes: the OAuth 2.0 token endpoint of
a service account (it checks the JWT assertion's RS256 signature against the
account's public key and its claims), the GA4 Data API ``runReport`` (paged by the
request's ``limit``/``offset`` over a fixed list of rows, with ``rowCount``) and
PageSpeed Insights v5 ``runPagespeed`` (one stored response per URL and strategy).
Faults are scripted: a queue of statuses to answer before the real answer, per
endpoint or per URL. Every request is recorded for the tests to check.

``python -m tests.google_api`` serves files written by the load generator
(``--format ga4`` / ``--format psi``) for trying ``manage.py fetch`` by hand
(docs/sources.md, "Worked example").
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GA4_SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
# The audience of a service account's assertion, whatever the token_uri it is sent to.
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Fault:
    status: int
    retry_after: str | None = None
    body: dict | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: dict
    body: object


@dataclass
class GoogleApi:
    """The state behind the server: data to serve, scripted faults, recorded requests."""

    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    client_email: str = "metriflow-fetch@metriflow-test.iam.gserviceaccount.com"
    property_id: str = "123456789"
    ga4_headers: dict = field(default_factory=dict)  # dimensionHeaders, metricHeaders, metadata
    ga4_rows: list = field(default_factory=list)
    psi: dict = field(default_factory=dict)  # (url, strategy) -> response
    token_faults: list[Fault] = field(default_factory=list)
    ga4_faults: list[Fault] = field(default_factory=list)
    psi_faults: dict = field(default_factory=dict)  # url -> list[Fault]
    psi_always_fail: dict = field(default_factory=dict)  # url -> Fault (every time)
    requests: list[Recorded] = field(default_factory=list)
    assertions: list[dict] = field(default_factory=list)  # verified JWT claims
    tokens: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def service_account_info(self) -> dict:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": "metriflow-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": f"{self.base_url}/o/oauth2/auth",
            "token_uri": f"{self.base_url}/token",
            "universe_domain": "googleapis.com",
        }

    # -- endpoints: each returns (status, headers, body) -----------------------------------
    def token(self, form: dict) -> tuple[int, dict, dict]:
        if fault := _pop(self.token_faults):
            return _fault(fault)
        if form.get("grant_type") != [JWT_BEARER]:
            return 400, {}, {"error": "unsupported_grant_type"}
        claims = self.verify_assertion((form.get("assertion") or [""])[0])
        if claims is None:
            return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT"}
        with self.lock:
            self.assertions.append(claims)
            token = f"ya29.test-{len(self.tokens) + 1}"
            self.tokens.append(token)
        return 200, {}, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def verify_assertion(self, assertion: str) -> dict | None:
        """The claims of an RS256 JWT signed by the account's key, for this endpoint."""
        try:
            head, payload, signature = assertion.split(".")
            header = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(payload))
            self.private_key.public_key().verify(
                b64url_decode(signature),
                f"{head}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return None
        now = dt.datetime.now(dt.UTC).timestamp()
        if (
            header.get("alg") != "RS256"
            or claims.get("iss") != self.client_email
            or claims.get("aud") != TOKEN_AUDIENCE
            or not claims.get("iat", now + 1000) - 300 <= now < claims.get("exp", 0)
        ):
            return None
        return claims

    def run_report(self, property_id: str, headers: dict, body: dict) -> tuple[int, dict, dict]:
        if headers.get("authorization") not in {f"Bearer {t}" for t in self.tokens}:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if property_id != self.property_id:
            return _error(403, "PERMISSION_DENIED", "User does not have sufficient permissions.")
        if fault := _pop(self.ga4_faults):
            return _fault(fault)
        offset, limit = int(body.get("offset", 0)), int(body.get("limit", 10000))
        asked = [d["name"] for d in body.get("dimensions", [])]
        rows = self.report_rows(body.get("dateRanges") or [], asked)
        page = rows[offset : offset + limit]
        out = {**self.ga4_headers}
        if asked:
            out["dimensionHeaders"] = [{"name": name} for name in asked]
        if page:
            out["rows"] = page
        if rows:
            out["rowCount"] = len(rows)
        out["kind"] = "analyticsData#runReport"
        return 200, {}, out

    def report_rows(self, date_ranges: list, asked: list[str] | None = None) -> list:
        """The rows whose ``dateHour`` falls in the request's (inclusive) date range, with
        the dimensions asked for: ``hostName`` and ``pagePath`` (no query) are cut from the
        stored ``pageLocation``, and rows that then share their dimensions are summed into
        one, as GA4 does."""
        stored = [h["name"] for h in self.ga4_headers.get("dimensionHeaders", [])]
        rows = self.ga4_rows
        if date_ranges:
            first = date_ranges[0]["startDate"].replace("-", "")
            last = date_ranges[0]["endDate"].replace("-", "")
            at = stored.index("dateHour")
            rows = [r for r in rows if first <= r["dimensionValues"][at]["value"][:8] <= last]
        if not asked or asked == stored:
            return rows
        merged: dict[tuple, list] = {}
        for row in rows:
            values = dict(zip(stored, (v["value"] for v in row["dimensionValues"]), strict=True))
            parts = urlsplit(values["pageLocation"])
            values["hostName"] = parts.hostname or ""
            values["pagePath"] = parts.path or "/"
            key = tuple(values[name] for name in asked)
            metrics = [float(m["value"]) for m in row["metricValues"]]
            if key in merged:
                merged[key] = [a + b for a, b in zip(merged[key], metrics, strict=True)]
            else:
                merged[key] = metrics
        return [
            {
                "dimensionValues": [{"value": v} for v in key],
                "metricValues": [{"value": repr(m) if m != int(m) else str(int(m))}
                                 for m in metrics],
            }
            for key, metrics in merged.items()
        ]  # fmt: skip

    def run_pagespeed(self, query: dict) -> tuple[int, dict, dict]:
        url, strategy = query.get("url", [""])[0], query.get("strategy", [""])[0]
        if url in self.psi_always_fail:
            return _fault(self.psi_always_fail[url])
        if fault := _pop(self.psi_faults.get(url, [])):
            return _fault(fault)
        response = self.psi.get((url, strategy))
        if response is None:
            return _error(400, "INVALID_ARGUMENT", f"Unable to process request for {url}")
        return 200, {}, response


def _pop(faults: list[Fault]) -> Fault | None:
    return faults.pop(0) if faults else None


def _error(code: int, status: str, message: str) -> tuple[int, dict, dict]:
    return code, {}, {"error": {"code": code, "message": message, "status": status}}


def _fault(fault: Fault) -> tuple[int, dict, dict]:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    body = fault.body or {
        "error": {"code": fault.status, "message": f"scripted {fault.status}", "status": "X"}
    }
    return fault.status, headers, body


class _Handler(BaseHTTPRequestHandler):
    api: GoogleApi  # set on the server's subclass

    def log_message(self, *args) -> None:  # quiet
        pass

    def _answer(self, status: int, headers: dict, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        api = self.server.api  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        with api.lock:
            api.in_flight += 1
            api.max_in_flight = max(api.max_in_flight, api.in_flight)
        try:
            if method == "POST" and parts.path == "/token":
                form = parse_qs(raw.decode())
                api.requests.append(Recorded(method, parts.path, query, headers, form))
                answer = api.token(form)
            elif method == "POST" and parts.path.startswith("/v1beta/properties/"):
                body = json.loads(raw or b"{}")
                api.requests.append(Recorded(method, parts.path, query, headers, body))
                property_id = parts.path.removeprefix("/v1beta/properties/").split(":")[0]
                if not parts.path.endswith(":runReport"):
                    answer = _error(404, "NOT_FOUND", "no such method")
                else:
                    answer = api.run_report(property_id, headers, body)
            elif method == "GET" and parts.path == "/pagespeedonline/v5/runPagespeed":
                api.requests.append(Recorded(method, parts.path, query, headers, None))
                answer = api.run_pagespeed(query)
            else:
                answer = _error(404, "NOT_FOUND", f"{method} {parts.path}")
        finally:
            with api.lock:
                api.in_flight -= 1
        self._answer(*answer)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class Server:
    """The endpoints above on 127.0.0.1 (a free port), served by a thread until closed."""

    def __init__(self, api: GoogleApi, port: int = 0) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.api = api  # type: ignore[attr-defined]
        api.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.api = api
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return self.api.base_url

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def load_ga4(api: GoogleApi, path: str) -> None:
    """The rows of every response of an NDJSON GA4 file as one report."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            response = json.loads(line)
            if not api.ga4_headers:
                api.ga4_headers = {
                    k: response[k]
                    for k in ("dimensionHeaders", "metricHeaders", "metadata")
                    if k in response
                }
            api.ga4_rows.extend(response.get("rows", []))


def load_psi(api: GoogleApi, path: str) -> None:
    """Each response of an NDJSON PSI file under its requested URL and form factor."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            response = json.loads(line)
            result = response["lighthouseResult"]
            key = (result["requestedUrl"], result["configSettings"]["formFactor"])
            api.psi[key] = response


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.google_api", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--ga4", metavar="FILE", help="NDJSON GA4 file (loadgen --format ga4)")
    parser.add_argument("--psi", metavar="FILE", help="NDJSON PSI file (loadgen --format psi)")
    parser.add_argument(
        "--credentials-out",
        metavar="FILE",
        required=True,
        help="where to write the service-account key file this server accepts",
    )
    args = parser.parse_args(argv)
    api = GoogleApi()
    if args.ga4:
        load_ga4(api, args.ga4)
    if args.psi:
        load_psi(api, args.psi)
    server = Server(api, args.port)
    with open(args.credentials_out, "w", encoding="utf-8") as f:
        json.dump(api.service_account_info(), f, indent=2)
    print(
        f"serving on {server.url}: property {api.property_id} ({len(api.ga4_rows):,} rows), "
        f"{len(api.psi):,} PSI runs; credentials in {args.credentials_out}",
        flush=True,
    )
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
