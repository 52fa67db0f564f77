"""gunicorn settings for the API, used by docker-compose and `make api`."""

import multiprocessing
import os

# This machine only by default; a container publishing the port sets 0.0.0.0:8080.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
# gunicorn's control socket is one path per host (~/.gunicorn/gunicorn.ctl): a second
# instance would take it over and the first to exit would delete it. Nothing uses it.
control_socket_disable = True


def _logconfig() -> dict:
    """gunicorn's own lines (start, stop, access) in the app's format: JSON in production."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")  # as wsgi.py
    from django.conf import settings

    config = dict(settings.LOGGING)
    gunicorn_loggers = {name: {"handlers": [], "propagate": True, "level": "INFO"}
                        for name in ("gunicorn.error", "gunicorn.access")}  # fmt: skip
    config["loggers"] = {**config.get("loggers", {}), **gunicorn_loggers}
    return config


logconfig_dict = _logconfig()

# /metrics sums the request metrics of every worker: each worker writes its counts to
# files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode). The
# master sets it before the workers start (the app is loaded in each worker, after):
# the given directory emptied of an earlier run's counts, or a new temporary one,
# removed when gunicorn exits.
_metrics = {"dir": None, "owned": False}


def on_starting(server):
    import glob
    import tempfile

    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="metriflow-api-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _metrics["owned"] = True
    _metrics["dir"] = path


def child_exit(server, worker):
    """A worker that ended: its counts stay summed, its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics["dir"])


def on_exit(server):
    if _metrics["owned"]:
        import shutil

        shutil.rmtree(_metrics["dir"], ignore_errors=True)
