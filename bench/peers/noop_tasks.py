"""The peer of the showcase's ping on Celery: a no-op task.

    client --delay()--> Redis list --> prefork worker (2 processes)
       ^                                      |
       +------ Redis result key <--- noop() --+

The broker and the result backend are the Redis server that peers.sh
starts on 127.0.0.1; its URL comes in SNAKEBENCH_REDIS_URL.
"""

import os

from celery import Celery

__all__ = ["app", "noop"]

_URL = os.environ["SNAKEBENCH_REDIS_URL"]

app = Celery("snakebench_peers", broker=_URL, backend=_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # One task at a time per process, as a worker of the product runs one.
    worker_prefetch_multiplier=1,
    task_ignore_result=False,
    result_expires=300,
    broker_connection_retry_on_startup=True,
)


@app.task(name="snakebench.noop")
def noop(message="hi"):
    """What ping returns: the message and who answered."""
    return {"message": message, "worker_id": noop.request.hostname,
            "pid": os.getpid()}
