"""gunicorn settings for the API, used by docker-compose and `make api`."""

import multiprocessing
import os

# This machine only by default; a container publishing the port sets 0.0.0.0:8080.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
