"""The Celery application: one RabbitMQ queue per pipeline stage.

Workers are started per queue, e.g. ``celery -A metriflow worker -Q daily``.
Task names are stable and explicit (``pipeline.stage.<stage>``) and each task
is routed to the queue of its stage.
"""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")

# The chain, in order. ``raw`` is ingestion itself (files into the raw tables).
STAGES = ("raw", "staged", "page", "interval", "daily", "monthly", "yearly")

PIPELINE_EXCHANGE = Exchange("metriflow", type="direct", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("metriflow.dlx", type="direct", durable=True)
DEAD_LETTER_QUEUE = "dead_letter"


def _stage_queue(stage: str) -> Queue:
    return Queue(
        stage,
        PIPELINE_EXCHANGE,
        routing_key=stage,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": DEAD_LETTER_QUEUE,
        },
    )


app = Celery("metriflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (
    *(_stage_queue(stage) for stage in STAGES),
    Queue(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, routing_key=DEAD_LETTER_QUEUE, durable=True),
)
app.conf.task_default_exchange = PIPELINE_EXCHANGE.name
app.conf.task_default_queue = "raw"
app.conf.task_default_routing_key = "raw"
app.conf.task_routes = {
    **{f"pipeline.stage.{stage}": {"queue": stage, "routing_key": stage} for stage in STAGES},
    "pipeline.sweep": {"queue": "staged", "routing_key": "staged"},
}
app.autodiscover_tasks()
