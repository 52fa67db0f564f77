"""Settings shared by every environment, read from the environment.

Defaults work on a development or CI machine where PostgreSQL
(127.0.0.1:5432, user ``postgres``, trust auth), RabbitMQ (127.0.0.1:5672,
guest/guest) and Redis (127.0.0.1:6379) run. Every variable is listed in
``.env.example``.
"""

from datetime import timedelta
from pathlib import Path

import environ

from .logs import log_format, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A .env file next to manage.py is read when present; real environment wins.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Marker for the development key (unset or empty DJANGO_SECRET_KEY): production settings
# refuse it, local settings replace it with a key of the checkout's own.
DEV_SECRET_KEY = "metriflow-dev-insecure-key-change-me"

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or DEV_SECRET_KEY
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "metriflow",
    "pipeline",
    "reporting",
    "accounts",  # after pipeline: its admin registers the Site admin again with members
    "rest_framework_api_key",
    "apikeys",
    "dashboard",
    "observability",  # /metrics (Prometheus), the workers' task metrics
]

MIDDLEWARE = [
    # Outermost: counts and times every request (metriflow_http_*; observability/).
    "observability.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI, ReDoc, the dashboard) are served by the app
    # itself in every mode, from hashed, compressed copies made by collectstatic.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "metriflow.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "metriflow.urls"
WSGI_APPLICATION = "metriflow.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Metriflow's overrides of third-party templates (ReDoc without web fonts).
        "DIRS": [BASE_DIR / "metriflow" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- PostgreSQL -------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/metriflow"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = "metriflow"
# The ORM's connections serve short report queries: parallel workers cost more
# to start than they save there (measured: 9 -> 2 ms for a small histogram
# merge), and memoizing unnest() over distinct arrays only evicts. The stages
# use connections of their own with their own settings.
DATABASES["default"]["OPTIONS"].setdefault(
    "options", "-c max_parallel_workers_per_gather=0 -c enable_memoize=off -c jit=off"
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "var" / "static"))
# collectstatic writes hashed, gzip-compressed copies; whitenoise
# serves them with far-future cache headers. Every asset a page loads comes
# from here: nothing is fetched from another host.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Every page loads only from Metriflow itself. Swagger UI and ReDoc start with
# inline scripts and styles; ReDoc runs a web worker from a blob: URL.
METRIFLOW_CSP = env.str(
    "METRIFLOW_CSP",
    default="default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'",
)

# --- Redis: cache, report ranges, rate-limit counters ------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "metriflow.cache.MetriflowRedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="metriflow"),
        "TIMEOUT": env.int("CACHE_TIMEOUT_SECONDS", default=3600),
        # Short bounds: an unreachable Redis is a cache miss (metriflow/cache.py), and
        # a request waits at most these for it.
        "OPTIONS": {
            "socket_connect_timeout": env.float(
                "METRIFLOW_REDIS_CONNECT_TIMEOUT_SECONDS", default=0.25
            ),
            "socket_timeout": env.float("METRIFLOW_REDIS_SOCKET_TIMEOUT_SECONDS", default=0.5),
        },
    }
}
# An unreachable Redis is logged at most once per this many seconds per process.
METRIFLOW_REDIS_WARN_SECONDS = env.float("METRIFLOW_REDIS_WARN_SECONDS", default=60.0)

# --- Celery on RabbitMQ ------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="amqp://guest:guest@127.0.0.1:5672//")
# The chain's state lives in the PostgreSQL ledger, not in a result backend.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Publisher confirms: a publish returns once the broker has the message (the outbox
# relay marks a hand-off published only then).
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# Stage tasks must finish well below RabbitMQ's consumer timeout: the broker's
# `consumer_timeout`, as set on the broker (RabbitMQ's default, 30 min), is told here;
# check metriflow.W001 warns when the hard time limit is not below it.
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=20 * 60)
METRIFLOW_BROKER_CONSUMER_TIMEOUT_SECONDS = env.int(
    "METRIFLOW_BROKER_CONSUMER_TIMEOUT_SECONDS", default=30 * 60
)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=18 * 60)
# A task that fails for good is rejected (to the dead-letter queue), not acked.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# The periodic sweep queues pending batches, dirty windows and windows past their
# time limit; the periodic relay publishes hand-offs the outbox still holds (the
# broker was away when they were committed).
CELERY_BEAT_SCHEDULE = {
    "pipeline-sweep": {
        "task": "pipeline.sweep",
        "schedule": env.float("METRIFLOW_SWEEP_SECONDS", default=60.0),
        "options": {"queue": "staged"},
    },
    "pipeline-relay": {
        "task": "pipeline.relay",
        "schedule": env.float("METRIFLOW_RELAY_SECONDS", default=10.0),
        "options": {"queue": "staged"},
    },
}

# --- REST API ------------------------------------------------------------------
REST_FRAMEWORK = {
    # A Bearer JWT, or the session of a user logged in through the admin or the
    # browsable API's login (/api/auth/browser/login/); the session needs a CSRF token
    # on unsafe methods. JWT first: an anonymous request gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reporting.authentication.CachedUserJWTAuthentication",
        # `Authorization: Api-Key <key>`: a user's read-only API key (apikeys/).
        "apikeys.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "reporting.renderers.OrjsonRenderer",
        "reporting.renderers.ReportBrowsableAPIRenderer",
    ],
}
# Where the browsable API's login goes when it was not given a page to return to.
LOGIN_REDIRECT_URL = "/api/docs/"
# Where a page that needs a login (the dashboard at /) sends an anonymous visitor.
LOGIN_URL = "dashboard:login"

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=5)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "ALGORITHM": "HS256",
    # An empty JWT_SIGNING_KEY (as in .env.example) falls back to the secret key.
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
    "UPDATE_LAST_LOGIN": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Metriflow reporting API",
    "DESCRIPTION": "Traffic (GA) and performance (PSI) reports over any date range.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "TAGS": [
        {"name": "reports", "description": "Traffic and performance over any range."},
        {"name": "auth", "description": "Accounts and JWT access / refresh tokens."},
        {"name": "sites", "description": "The sites a user can read, and their members."},
        {"name": "health", "description": "Whether the API and its services answer."},
        {"name": "keys", "description": "Your read-only API keys (`Authorization: Api-Key`)."},
    ],
    # A membership's role, and the role a site answer shows (which may also be staff).
    "ENUM_NAME_OVERRIDES": {
        "MembershipRoleEnum": "accounts.models.Role.values",
        "SiteRoleEnum": "accounts.openapi.ROLES",
    },
    # Swagger UI keeps the Bearer token entered with "Authorize" across reloads.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True},
    # Swagger UI and ReDoc from the project's own static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Metriflow ---------------------------------------------------------------------
# Length of the interval stage's windows in hours; must divide a day.
METRIFLOW_INTERVAL_HOURS = env.int("METRIFLOW_INTERVAL_HOURS", default=4)
# Records per committed COPY batch during ingestion (measured: docs/benchmarks.md).
METRIFLOW_INGEST_BATCH_SIZE = env.int("METRIFLOW_INGEST_BATCH_SIZE", default=1_000_000)
# Files ingested at the same time by one `manage.py ingest`.
METRIFLOW_INGEST_PARALLEL = env.int("METRIFLOW_INGEST_PARALLEL", default=2)
# Files smaller than this in all are read in the calling process: starting a worker
# process (Django set up afresh) costs about a second, more than reading them.
METRIFLOW_INGEST_PARALLEL_MIN_BYTES = env.int(
    "METRIFLOW_INGEST_PARALLEL_MIN_BYTES", default=32 * 1024 * 1024
)
# Bounds of one input record (docs/architecture.md, "Ingestion", Bounds): a record
# breaking one is rejected with its position and the reason, the rest of the file loads.
METRIFLOW_INGEST_MAX_RECORD_BYTES = env.int("METRIFLOW_INGEST_MAX_RECORD_BYTES", default=65_536)
METRIFLOW_INGEST_MAX_DEPTH = env.int("METRIFLOW_INGEST_MAX_DEPTH", default=32)
METRIFLOW_INGEST_MAX_URL_CHARS = env.int("METRIFLOW_INGEST_MAX_URL_CHARS", default=2_048)
# One PageSpeed Insights v5 response of `ingest --format psi` (docs/sources.md): real ones
# are 0.3-1 MB, far above the record bound, so they have their own.
METRIFLOW_INGEST_MAX_PSI_RESPONSE_BYTES = env.int(
    "METRIFLOW_INGEST_MAX_PSI_RESPONSE_BYTES", default=8 << 20
)
# Supported instants of records, [from, until) in UTC; a report's bounds lie in
# [from, until] too (reporting/serializers.py), outside them a 400.
METRIFLOW_INGEST_TIME_FROM = env.str("METRIFLOW_INGEST_TIME_FROM", default="1990-01-01")
METRIFLOW_INGEST_TIME_UNTIL = env.str("METRIFLOW_INGEST_TIME_UNTIL", default="2100-01-01")
# Windows of one stage run at once by `manage.py pipeline run` (in-process drain),
# each on its own database connection (docs/benchmarks.md).
METRIFLOW_DRAIN_WORKERS = env.int("METRIFLOW_DRAIN_WORKERS", default=3)
# Whether an ingested batch starts the Celery chain (off: `pipeline run` drains).
METRIFLOW_PIPELINE_TRIGGER = env.bool("METRIFLOW_PIPELINE_TRIGGER", default=True)
# Where `make demo` writes its generated data set.
METRIFLOW_DATA_DIR = env.path("METRIFLOW_DATA_DIR", default=str(BASE_DIR / "data"))
# Seconds a composed report stays in Redis (its key changes when the data does).
METRIFLOW_REPORT_CACHE_SECONDS = env.int("METRIFLOW_REPORT_CACHE_SECONDS", default=3600)
# Most buckets one timeseries answer may hold; most rows one page of top pages.
METRIFLOW_MAX_BUCKETS = env.int("METRIFLOW_MAX_BUCKETS", default=2000)
METRIFLOW_MAX_PAGE_SIZE = env.int("METRIFLOW_MAX_PAGE_SIZE", default=500)
# Longest one SQL statement of a report may run (ms; the API's report transaction only,
# SET LOCAL): past it the report answers 503.
METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS = env.int(
    "METRIFLOW_REPORT_STATEMENT_TIMEOUT_MS", default=10_000
)
# Reports one user (or API key) may have running at once; beyond it 429. A slot expires
# after METRIFLOW_REPORT_SLOT_SECONDS even if its process died holding it.
METRIFLOW_REPORT_CONCURRENCY = env.int("METRIFLOW_REPORT_CONCURRENCY", default=4)
METRIFLOW_REPORT_SLOT_SECONDS = env.int("METRIFLOW_REPORT_SLOT_SECONDS", default=60)
# Rate limits (django-ratelimit syntax).
METRIFLOW_RATE_REPORTS = env.str("METRIFLOW_RATE_REPORTS", default="600/m")
# Per client IP, each of register, token, refresh and logout counted apart.
METRIFLOW_RATE_AUTH = env.str("METRIFLOW_RATE_AUTH", default="10/m")
# Registrations per client IP per hour, beside METRIFLOW_RATE_AUTH.
METRIFLOW_RATE_REGISTER = env.str("METRIFLOW_RATE_REGISTER", default="20/h")
# Whether anyone may create an account (POST /api/auth/register); when off, register
# answers 403 and users are created by staff (admin) and given sites by staff or a
# site admin. Production defaults to off.
METRIFLOW_OPEN_REGISTRATION = env.bool("METRIFLOW_OPEN_REGISTRATION", default=True)
# How long a JWT's user row, and a user's site memberships, stay in Redis; saving or
# deleting the user (a membership) drops it.
METRIFLOW_AUTH_USER_CACHE_SECONDS = env.int("METRIFLOW_AUTH_USER_CACHE_SECONDS", default=60)
# How long a verified API key stays in Redis; saving or deleting (revoking) it drops it.
METRIFLOW_API_KEY_CACHE_SECONDS = env.int("METRIFLOW_API_KEY_CACHE_SECONDS", default=60)
# An API key's last_used_at is written at most once per this many seconds.
METRIFLOW_API_KEY_USE_SECONDS = env.int("METRIFLOW_API_KEY_USE_SECONDS", default=60)
# Fetching from Google (`manage.py fetch`, pipeline/fetch/, docs/sources.md). Base URLs
# of the APIs (a test or a proxy points them elsewhere); the GA4 service-account key file
# (default: GOOGLE_APPLICATION_CREDENTIALS) and the PSI API key (optional, raises the quota).
METRIFLOW_GA4_API_URL = env.str(
    "METRIFLOW_GA4_API_URL", default="https://analyticsdata.googleapis.com"
)
METRIFLOW_PSI_API_URL = env.str("METRIFLOW_PSI_API_URL", default="https://www.googleapis.com")
METRIFLOW_GA4_CREDENTIALS = env.str(
    "METRIFLOW_GA4_CREDENTIALS", default=env.str("GOOGLE_APPLICATION_CREDENTIALS", default="")
)
METRIFLOW_PSI_API_KEY = env.str("METRIFLOW_PSI_API_KEY", default="")
# Requests in all per call (first included) for a 429, a 5xx or a dropped connection;
# backoff before retry n drawn from [0, min(max, base x 2^(n-1))] s, Retry-After honoured
# up to its own maximum (a longer one fails the call).
METRIFLOW_FETCH_ATTEMPTS = env.int("METRIFLOW_FETCH_ATTEMPTS", default=6)
METRIFLOW_FETCH_BACKOFF_SECONDS = env.float("METRIFLOW_FETCH_BACKOFF_SECONDS", default=1.0)
METRIFLOW_FETCH_BACKOFF_MAX_SECONDS = env.float("METRIFLOW_FETCH_BACKOFF_MAX_SECONDS", default=32.0)
METRIFLOW_FETCH_RETRY_AFTER_MAX_SECONDS = env.float(
    "METRIFLOW_FETCH_RETRY_AFTER_MAX_SECONDS", default=300.0
)
# Bounds of one request: connect and read timeouts (s; a PSI run takes up to a minute),
# bytes of one response.
METRIFLOW_FETCH_CONNECT_TIMEOUT_SECONDS = env.float(
    "METRIFLOW_FETCH_CONNECT_TIMEOUT_SECONDS", default=10.0
)
METRIFLOW_FETCH_TIMEOUT_SECONDS = env.float("METRIFLOW_FETCH_TIMEOUT_SECONDS", default=120.0)
METRIFLOW_FETCH_MAX_RESPONSE_BYTES = env.int("METRIFLOW_FETCH_MAX_RESPONSE_BYTES", default=64 << 20)
# GA4 report: rows per page (`limit`, at most 250000), most pages and days of one fetch.
METRIFLOW_GA4_PAGE_SIZE = env.int("METRIFLOW_GA4_PAGE_SIZE", default=10_000)
METRIFLOW_GA4_MAX_PAGES = env.int("METRIFLOW_GA4_MAX_PAGES", default=1_000)
METRIFLOW_GA4_MAX_DAYS = env.int("METRIFLOW_GA4_MAX_DAYS", default=366)
# PSI: runs at once, most URLs of one fetch.
METRIFLOW_PSI_CONCURRENCY = env.int("METRIFLOW_PSI_CONCURRENCY", default=4)
METRIFLOW_PSI_MAX_CONCURRENCY = env.int("METRIFLOW_PSI_MAX_CONCURRENCY", default=16)
METRIFLOW_PSI_MAX_URLS = env.int("METRIFLOW_PSI_MAX_URLS", default=500)
RATELIMIT_USE_CACHE = "default"

# --- Metrics (Prometheus; observability/, docs/operations.md "Metrics") ---------------
# Who may read /metrics: a request with `Authorization: Bearer <token>`, or from one of
# the addresses or networks (comma-separated, e.g. 10.0.0.0/8); with DEBUG on, also
# this machine's loopback. Everyone else gets 401 (no token) or 403.
METRIFLOW_METRICS_TOKEN = env.str("METRIFLOW_METRICS_TOKEN", default="")
METRIFLOW_METRICS_ALLOWED_IPS = env.list("METRIFLOW_METRICS_ALLOWED_IPS", default=[])
# Bounds of one scrape's reads: each SQL statement (ms), the broker's connect/read (s).
METRIFLOW_METRICS_STATEMENT_TIMEOUT_MS = env.int(
    "METRIFLOW_METRICS_STATEMENT_TIMEOUT_MS", default=2_000
)
METRIFLOW_METRICS_BROKER_TIMEOUT_SECONDS = env.float(
    "METRIFLOW_METRICS_BROKER_TIMEOUT_SECONDS", default=2.0
)
# Port on which each Celery worker serves its own task metrics (0: off), and its address.
METRIFLOW_WORKER_METRICS_PORT = env.int("METRIFLOW_WORKER_METRICS_PORT", default=0)
METRIFLOW_WORKER_METRICS_ADDRESS = env.str("METRIFLOW_WORKER_METRICS_ADDRESS", default="127.0.0.1")

# --- Logs and health (docs/operations.md) ----------------------------------------
# JSON lines (json) or readable lines (console); unset: console when DEBUG is on, else json.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
METRIFLOW_LOG_FORMAT = log_format(env, debug=DEBUG)
LOGGING = logging_config(METRIFLOW_LOG_FORMAT, LOG_LEVEL)
# Readiness (/api/health/ready): the longest each check may take, how long the answer of the
# workers is reused (a poller does not flood the broker), and the most the oldest pending
# work (dirty mark or batch waiting to be staged) may age before the pipeline counts as
# behind.
METRIFLOW_HEALTH_TIMEOUT_SECONDS = env.float("METRIFLOW_HEALTH_TIMEOUT_SECONDS", default=1.0)
METRIFLOW_HEALTH_WORKERS_CACHE_SECONDS = env.float(
    "METRIFLOW_HEALTH_WORKERS_CACHE_SECONDS", default=10.0
)
METRIFLOW_HEALTH_MAX_LAG_SECONDS = env.float("METRIFLOW_HEALTH_MAX_LAG_SECONDS", default=900.0)
