"""The page catalog: sites, page URLs and the per-page parameters of the model.

URLs depend only on the number of pages and sites (so two data sets with the same
``--pages``/``--sites`` describe the same pages); popularity, bounce rate, speed
and the other per-page parameters are drawn from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from loadgen.rng import generator

SEED_HOST = "seed.metriflow.local"

HOSTS = (
    "www.northwind-outdoors.example.com",
    "shop.bluefin-coffee.example.com",
    "blog.lumenworks.example.org",
    "www.harbor-bikes.example.net",
    "docs.cobalt-cloud.example.com",
    "www.maple-and-oak.example.com",
    "news.riverside-gazette.example.org",
    "www.pinecrest-clinic.example.net",
    "store.urban-threads.example.com",
    "www.summit-learning.example.org",
    "app.quillpad.example.com",
    "www.seaside-rentals.example.net",
)

_STATIC = (
    "/about",
    "/pricing",
    "/contact",
    "/blog",
    "/products",
    "/faq",
    "/careers",
    "/privacy",
    "/search",
)
_ITEMS = (
    "trail-jacket",
    "espresso-blend",
    "road-helmet",
    "linen-shirt",
    "desk-lamp",
    "travel-mug",
    "rain-boots",
    "wool-scarf",
    "city-bike",
    "yoga-mat",
)
_TOPICS = (
    "getting-started",
    "installation",
    "billing",
    "api-keys",
    "webhooks",
    "shipping",
    "returns",
    "accounts",
    "security",
    "integrations",
)
_CATEGORIES = ("shoes", "outdoor", "kitchen", "books", "garden", "sale", "new-arrivals")
_SLUGS = ("city-council", "weather", "local-sports", "market-report", "interview", "events")


def host_for(site: int) -> str:
    """Host name of site ``site`` (0-based)."""
    if site < len(HOSTS):
        return HOSTS[site]
    return f"www.site{site + 1}.example.com"


def path_for(site: int, k: int) -> str:
    """Path of the ``k``-th page (0-based) of a site: ``/``, static pages, then content."""
    if k == 0:
        return "/"
    if k <= len(_STATIC):
        return _STATIC[k - 1]
    n = k - len(_STATIC) - 1
    kind = (n + site) % 6
    num = n // 6 + 1
    if kind == 0:
        return f"/blog/post-{num}"
    if kind == 1:
        return f"/products/{_ITEMS[num % len(_ITEMS)]}-{num}"
    if kind == 2:
        return f"/docs/{_TOPICS[num % len(_TOPICS)]}/part-{num}"
    if kind == 3:
        return f"/category/{_CATEGORIES[num % len(_CATEGORIES)]}/page-{num}"
    if kind == 4:
        month = num % 12 + 1
        return f"/news/2024/{month:02d}/{_SLUGS[num % len(_SLUGS)]}-{num}"
    return f"/help/{_TOPICS[num % len(_TOPICS)]}-{num}"


@dataclass(frozen=True)
class Catalog:
    """Pages and per-page model parameters (arrays indexed by page)."""

    urls: list[str]  # canonical URL of each page
    seed_numbers: list[int]  # page number in the seed format (1-based)
    hosts: list[str]
    is_root: np.ndarray  # bool
    users_level: np.ndarray  # expected users per hour at the daily peak of a weekday
    extra_sessions: np.ndarray  # sessions = users + Poisson(users * extra)
    extra_views: np.ndarray  # views = sessions + Poisson(sessions * extra)
    bounce_rate: np.ndarray
    engagement_median: np.ndarray  # seconds per session
    speed: np.ndarray  # multiplies every timing vital
    cls_scale: np.ndarray


def build_catalog(pages: int, sites: int, seed: int, seed_format: bool = False) -> Catalog:
    """Build the catalog of ``pages`` pages spread round-robin over ``sites`` sites."""
    if seed_format:
        urls = [f"https://{SEED_HOST}/page/{i + 1}" for i in range(pages)]
        hosts = [SEED_HOST]
        is_root = np.zeros(pages, dtype=bool)
        site_of = np.zeros(pages, dtype=np.int64)
        n_sites = 1
    else:
        n_sites = min(sites, pages)
        hosts = [host_for(s) for s in range(n_sites)]
        urls = [
            f"https://{hosts[i % n_sites]}{path_for(i % n_sites, i // n_sites)}"
            for i in range(pages)
        ]
        is_root = np.arange(pages) < n_sites
        site_of = np.arange(pages) % n_sites
    rng = generator(seed, "catalog")
    # Zipf-like popularity over a random ranking; the home pages are placed among the top.
    order = rng.permutation(pages)
    if not seed_format:
        roots = np.flatnonzero(is_root)
        others = order[~np.isin(order, roots)]
        order = np.concatenate([rng.permutation(roots), others])
    rank = np.empty(pages, dtype=np.float64)
    rank[order] = np.arange(1, pages + 1)
    users_level = 1500.0 * rank**-1.07 + 0.2
    site_speed = rng.lognormal(0.0, 0.25, n_sites)
    return Catalog(
        urls=urls,
        seed_numbers=list(range(1, pages + 1)),
        hosts=hosts,
        is_root=is_root,
        users_level=users_level,
        extra_sessions=rng.uniform(0.12, 0.45, pages),
        extra_views=rng.lognormal(math.log(1.4), 0.35, pages),
        bounce_rate=rng.beta(4.0, 5.0, pages),
        engagement_median=rng.lognormal(math.log(40.0), 0.4, pages),
        speed=site_speed[site_of] * rng.lognormal(0.0, 0.3, pages),
        cls_scale=rng.lognormal(0.0, 0.5, pages),
    )


# Daily cycle (UTC hour of day): lowest around 03:00, highest around 15:00.
_HOD = np.array(
    [0.2 + 0.8 * (0.5 - 0.5 * math.cos(2 * math.pi * (h - 3) / 24)) ** 1.3 for h in range(24)]
)
# Weekly cycle, Monday = 0: weekend lower.
_DOW = np.array([1.0, 1.03, 1.02, 1.0, 0.93, 0.68, 0.62])


def traffic_factor(hour_of_day: np.ndarray, day_of_week: np.ndarray) -> np.ndarray:
    """Multiplier of the expected traffic for each hour."""
    return _HOD[hour_of_day] * _DOW[day_of_week]
