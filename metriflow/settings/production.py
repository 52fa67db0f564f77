"""Production: refuses to start with DEBUG on, or a secret or JWT signing key that is
short or the development key."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import DEV_SECRET_KEY, SECRET_KEY, SIMPLE_JWT, env

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production settings.")
if not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters "
        "in production settings."
    )
if len(SIMPLE_JWT["SIGNING_KEY"]) < 50 or SIMPLE_JWT["SIGNING_KEY"] == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "JWT_SIGNING_KEY must be a random value of at least 50 characters, not the "
        "development key (or left empty: the secret key signs the tokens)."
    )

# Accounts are created by staff or invited by a site admin unless this is turned on.
METRIFLOW_OPEN_REGISTRATION = env.bool("METRIFLOW_OPEN_REGISTRATION", default=False)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
