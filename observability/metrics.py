"""The metrics Metriflow's own processes count, declared once.

The API's requests are counted by :mod:`observability.middleware` in every
gunicorn worker, the tasks by :mod:`observability.worker` in every Celery pool
process. With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn and the workers set it,
``metriflow/gunicorn.conf.py`` and :mod:`observability.worker`) each process
writes its values to files there and a scrape sums them
(prometheus-client's multiprocess mode). Every metric here has labels, so its
values are made on first use, after the process chose its mode.

The pipeline's and the broker's state are not counted here: they are read at
scrape time (:mod:`observability.collectors`).
"""

from prometheus_client import Counter, Histogram, disable_created_metrics

# No ``*_created`` series: multiprocess mode has none, and one process would differ.
disable_created_metrics()

# Seconds; a report is usually a few ms, a cold one up to the statement timeout (10 s).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds; a stage window takes from milliseconds to the task's time limit (20 min).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1200.0)

HTTP_REQUESTS = Counter(
    "metriflow_http_requests",
    "HTTP requests answered by the API, by method, view (URL name) and status code.",
    ["method", "view", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "metriflow_http_request_duration_seconds",
    "Seconds from a request's arrival in Django to its answer, by method and view.",
    ["method", "view"],
    buckets=HTTP_BUCKETS,
)

WORKER_TASKS = Counter(
    "metriflow_worker_tasks",
    "Celery tasks run by this worker, by stage (the task's name outside the stages) "
    "and outcome (Celery's final state: success, failure, retry, ...).",
    ["stage", "outcome"],
)
WORKER_TASK_DURATION = Histogram(
    "metriflow_worker_task_duration_seconds",
    "Seconds a Celery task ran in this worker, by stage and outcome.",
    ["stage", "outcome"],
    buckets=TASK_BUCKETS,
)
