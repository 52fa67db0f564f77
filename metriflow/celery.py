"""The Celery application: one RabbitMQ queue per pipeline stage.

Workers are started per queue, e.g. ``celery -A metriflow worker -Q daily``.
Task names are stable and explicit (``pipeline.stage.<stage>``) and each task
is routed to the queue of its stage.

Every stage queue dead-letters to the ``metriflow.dlx`` exchange, bound to the
``dead_letter`` queue. A worker declares only the queues it consumes, so every
worker also declares the dead-letter exchange, queue and binding, whatever its
``-Q``: a consumer bootstep (:class:`DeadLetterDeclaration`) runs on each
(re)connection of the worker's consumer, before its event loop takes a message.
Without them RabbitMQ drops a rejected message. ``dead_letter`` is not in
``task_queues``: a worker started without ``-Q`` must not consume (and run
again) the dead letters; ``manage.py pipeline dead-letters`` lists and
requeues them.

Workers run :class:`Consumer`, Celery's consumer with two faults handled as
Metriflow needs: a message whose body cannot be decoded is rejected without
requeue (dead-lettered, where Celery would acknowledge and so drop it), and
RabbitMQ closing the channel of a delivery held past its ``consumer_timeout``
is a connection loss (the consumer connects again and the broker redelivers),
where Celery would stop the worker.
"""

import logging
import logging.config
import os

from amqp import spec
from amqp.exceptions import ConnectionError as AMQPConnectionError
from amqp.exceptions import PreconditionFailed
from celery import Celery, bootsteps, signals
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import dump_body
from kombu import Exchange, Queue

from pipeline import catalog

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")

# The queues of the chain, in order (pipeline/catalog.py: one per stage, named after it).
# ``raw`` is ingestion itself (files into the raw tables).
STAGES = catalog.QUEUES

PIPELINE_EXCHANGE = Exchange("metriflow", type="direct", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("metriflow.dlx", type="direct", durable=True)
DEAD_LETTER_ROUTING_KEY = "dead_letter"
DEAD_LETTER_QUEUE = Queue(
    "dead_letter", DEAD_LETTER_EXCHANGE, routing_key=DEAD_LETTER_ROUTING_KEY, durable=True
)


def _stage_queue(stage: str) -> Queue:
    return Queue(
        stage,
        PIPELINE_EXCHANGE,
        routing_key=stage,
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": DEAD_LETTER_ROUTING_KEY,
        },
    )


def declare_dead_letter(channel) -> None:
    """Declares the dead-letter exchange, the ``dead_letter`` queue and their binding
    (idempotent; durable, so a broker restart keeps them and their messages)."""
    DEAD_LETTER_QUEUE.bind(channel).declare()


def recover(channel) -> None:
    """Gives back every message this channel holds unacknowledged (``basic.recover``
    with requeue), waiting for the broker's ``recover-ok`` so that closing the channel
    next does not race it."""
    channel.send_method(spec.Basic.Recover, "b", (True,), wait=spec.Basic.RecoverOk)


class DeadLetterDeclaration(bootsteps.StartStopStep):
    """Declares the dead-letter topology on the worker's broker connection.

    A consumer step rather than a ``worker_ready`` or ``celeryd_after_setup``
    signal: those fire once per worker process, the second before any broker
    connection exists, while a consumer step starts again on every reconnection
    (a broker restarted or a vhost rebuilt gets the topology back) and always
    before the event loop, the last step, runs a task that could be rejected.
    """

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, c):
        with c.connection.channel() as channel:
            declare_dead_letter(channel)
        logger.info("declared %s -> %s", DEAD_LETTER_EXCHANGE.name, DEAD_LETTER_QUEUE.name)


class ConsumerTimedOut(AMQPConnectionError):
    """RabbitMQ closed the consumer's channel: a delivery stayed unacknowledged past
    the broker's ``consumer_timeout`` (406 PRECONDITION_FAILED)."""


def is_consumer_timeout(exc: BaseException) -> bool:
    return isinstance(exc, PreconditionFailed) and "delivery acknowledgement" in str(
        getattr(exc, "reply_text", "") or ""
    )


def _consumer_timeout_is_a_connection_loss(loop):
    def run(*args, **kwargs):
        try:
            return loop(*args, **kwargs)
        except PreconditionFailed as exc:
            if is_consumer_timeout(exc):
                raise ConsumerTimedOut(str(exc.reply_text)) from exc
            raise

    return run


class Consumer(CeleryConsumer):
    """The worker's consumer (``worker_consumer``).

    - An undecodable body is logged and rejected without requeue: the stage queue's
      dead-letter exchange keeps it in ``dead_letter``, as every other poison
      message is kept.
    - The broker closing the channel because a delivery went unacknowledged past its
      ``consumer_timeout`` is raised from the event loop as :class:`ConsumerTimedOut`,
      one of the transport's connection errors: the consumer restarts its connection
      (cancelling the tasks it can no longer acknowledge, as on any connection loss)
      and the broker redelivers the message it took back. Any other channel error
      still stops the worker, as Celery's does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop = _consumer_timeout_is_a_connection_loss(self.loop)

    def on_decode_error(self, message, exc):
        logger.error(
            "undecodable message dead-lettered: %r [type:%r encoding:%r headers:%s] body: %s",
            exc,
            message.content_type,
            message.content_encoding,
            message.headers,
            dump_body(message, message.body),
        )
        message.reject_log_error(logger, self.connection_errors, requeue=False)


def _configure_logging(logfile: str | None = None) -> None:
    from django.conf import settings

    from metriflow.settings.logs import to_file

    logging.config.dictConfig(to_file(settings.LOGGING, logfile) if logfile else settings.LOGGING)
    logging.captureWarnings(True)  # warnings too become records of the same format


@signals.setup_logging.connect
def use_metriflow_logging(logfile=None, **_) -> None:
    """Workers and beat log through ``settings.LOGGING``, as the web app and the commands
    do (JSON or readable lines), instead of Celery's own root handler and format; to
    ``--logfile`` when one is given (its level stays ``LOG_LEVEL``)."""
    _configure_logging(logfile)


@signals.celeryd_init.connect
def no_banner_in_json_logs(instance=None, options=None, **_) -> None:
    """A worker's logging is set up from its very start (its first checks warn before
    Celery sets up logging). With JSON logs every line a worker prints is JSON: its
    start-up banner is left out (`celery inspect active_queues` and Flower show what it
    consumes)."""
    from django.conf import settings

    _configure_logging((options or {}).get("logfile"))
    if instance is not None and settings.METRIFLOW_LOG_FORMAT == "json":
        instance.quiet = True


@signals.worker_ready.connect
def no_shutdown_notice_in_json_logs(sender=None, **_) -> None:
    """Likewise, SIGTERM's warm shutdown is not announced by a plain line on stdout: the
    same handler, installed again without its notice."""
    from celery.apps.worker import install_worker_term_handler
    from django.conf import settings

    if settings.METRIFLOW_LOG_FORMAT == "json" and getattr(sender, "controller", None):
        install_worker_term_handler(sender.controller, verbose=False)


app = Celery("metriflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(_stage_queue(stage) for stage in STAGES)
app.steps["consumer"].add(DeadLetterDeclaration)
app.conf.worker_consumer = f"{__name__}:Consumer"
app.conf.task_default_exchange = PIPELINE_EXCHANGE.name
app.conf.task_default_queue = "raw"
app.conf.task_default_routing_key = "raw"
app.conf.task_routes = {
    **{
        f"pipeline.stage.{stage.name}": {"queue": stage.queue, "routing_key": stage.queue}
        for stage in catalog.STAGES
    },
    "pipeline.sweep": {"queue": "staged", "routing_key": "staged"},
    "pipeline.relay": {"queue": "staged", "routing_key": "staged"},
}
app.autodiscover_tasks()

# Each worker's own task metrics on METRIFLOW_WORKER_METRICS_PORT (off by default):
# signal handlers, connected on import (observability/worker.py).
import observability.worker  # noqa: E402, F401

# A worker refuses to start on data built with other settings (pipeline/datasettings.py).
# Connected after the app's Django fixup, whose worker_init handler sets Django up.
from pipeline.datasettings import refuse_worker_start  # noqa: E402

signals.worker_init.connect(refuse_worker_start)
