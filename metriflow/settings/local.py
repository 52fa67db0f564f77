"""Developer machine: DEBUG on by default, and a secret key of this checkout's own.

Unless DJANGO_SECRET_KEY is set, the secret key (and so the JWT signing key, unless
JWT_SIGNING_KEY is set) is a random one created on first use in var/secret-key
(DJANGO_SECRET_KEY_FILE), readable by its owner only and kept out of git, never the
development marker of base.py: a token signed on one checkout is worthless on another.
"""

import os
import secrets
from pathlib import Path

from .base import *  # noqa: F403
from .base import BASE_DIR, DEV_SECRET_KEY, LOG_LEVEL, SECRET_KEY, SIMPLE_JWT, env
from .logs import log_format, logging_config

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# Readable log lines while DEBUG is on, unless METRIFLOW_LOG_FORMAT says otherwise.
METRIFLOW_LOG_FORMAT = log_format(env, debug=DEBUG)
LOGGING = logging_config(METRIFLOW_LOG_FORMAT, LOG_LEVEL)


def checkout_secret_key(path: Path) -> str:
    """The key in ``path``; created there (mode 0600) when there is none yet. The key is
    written to a file of its own and linked into place, so that processes starting at
    the same time all read the one that won."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_urlsafe(64) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process created it first: its key is the one
    finally:
        draft.unlink()
    return path.read_text().strip()


if SECRET_KEY == DEV_SECRET_KEY:
    SECRET_KEY = checkout_secret_key(
        Path(env.str("DJANGO_SECRET_KEY_FILE", default=str(BASE_DIR / "var" / "secret-key")))
    )
    if SIMPLE_JWT["SIGNING_KEY"] == DEV_SECRET_KEY:
        SIMPLE_JWT = {**SIMPLE_JWT, "SIGNING_KEY": SECRET_KEY}
