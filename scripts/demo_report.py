"""Prints a short report fetched over HTTP from a running Metriflow API (used by demo.sh).

``demo_report.py register BASE USER PASSWORD`` registers the demo user (once);
``demo_report.py BASE FROM TO USER PASSWORD`` logs in and prints the user's sites,
the summary and the top pages of the range the demo data covers, and the summary
of the top page's site, named by its host.
"""

import json
import sys
import urllib.error
import urllib.request


def call(url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def register(base: str, username: str, password: str) -> int:
    status, body = call(f"{base}/api/auth/register", {"username": username, "password": password})
    if status not in (201, 400):  # 400: registered by an earlier run
        print(f"register failed: {status} {body}")
        return 1
    return 0


def print_summary(summary: dict, title: str) -> None:
    t, both = summary["traffic"], summary["performance"]["both"]
    print(title)
    print(
        f"  users {fmt(t['users'])}  sessions {fmt(t['sessions'])}  views {fmt(t['views'])}  "
        f"bounce rate {fmt(100 * t['bounce_rate'])}%  "
        f"views/session {fmt(t['views_per_session'], 2)}"
    )
    print(
        f"  PSI samples {fmt(both['samples'])}  score {fmt(both['performance_score_avg'])}  "
        f"LCP p75 {fmt(both['lcp_ms']['p75'], 0)} ms ({fmt(100 * both['lcp_ms']['good'])}% good)  "
        f"INP p75 {fmt(both['inp_ms']['p75'], 0)} ms  CLS p75 {fmt(both['cls']['p75'], 3)}"
    )


def main(base: str, start: str, end: str, username: str, password: str) -> int:
    status, tokens = call(f"{base}/api/auth/token", {"username": username, "password": password})
    if status != 200:
        print(f"login failed: {status} {tokens}")
        return 1
    access = tokens["access"]
    status, body = call(f"{base}/api/sites", token=access)
    if status != 200 or not body["sites"]:
        print(f"no sites for {username}: {status} {body} (manage.py sites grant {username} HOST)")
        return 1
    print(f"Sites of {username} (GET /api/sites)")
    hosts = {}
    for site in body["sites"]:
        hosts[site["id"]] = site["host"]
        print(
            f"  {site['host']:<36} {site['role']:<6} {fmt(site['pages'])} pages  "
            f"data {site['first_hour']} .. {site['last_hour']}"
        )
    status, summary = call(f"{base}/api/reports/summary?from={start}&to={end}", token=access)
    if status != 200:
        print(f"summary failed: {status} {summary}")
        return 1
    print_summary(summary, f"Summary of your sites {start} .. {end} (GET /api/reports/summary)")
    fresh = summary["freshness"]
    print(f"  fresh as of pipeline run {fresh['pipeline_run_at']}, pending: {fresh['pending']}")
    status, pages = call(
        f"{base}/api/reports/pages?from={start}&to={end}&order_by=-views&limit=5", token=access
    )
    if status != 200:
        print(f"pages failed: {status} {pages}")
        return 1
    print("Top pages by views (GET /api/reports/pages)")
    for row in pages["results"]:
        score = fmt(row["performance"]["both"]["performance_score_avg"])
        print(f"  {fmt(row['traffic']['views']):>10} views  score {score}  {row['page']['url']}")
    top = hosts[pages["results"][0]["page"]["site"]]
    status, summary = call(
        f"{base}/api/reports/summary?from={start}&to={end}&site={top}", token=access
    )
    if status != 200:
        print(f"site summary failed: {status} {summary}")
        return 1
    print_summary(summary, f"Summary of the top page's site (GET /api/reports/summary?site={top})")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["register"]:
        sys.exit(register(*sys.argv[2:5]))
    sys.exit(main(*sys.argv[1:6]))
