"""The Celery app delivers chunks as the README promises: acked late, requeued on worker loss.

The reconciler recovers lost chunks too (expired leases, stalled jobs), but only after a
lease or a stall window: no end-to-end test notices these settings go missing, so they are
pinned here, on the app and tasks a worker runs.
"""

from __future__ import annotations

from typing import Any

from app.jobs.dispatch import RUN_CHUNK_TASK


def test_chunk_tasks_are_acked_late_and_requeued_when_their_worker_is_lost(settings: Any) -> None:
    import workers.tasks  # noqa: F401  (registers the tasks, as a worker does)
    from workers.celery_app import celery_app

    conf = celery_app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1  # a worker holds no chunk it has not begun
    # What a worker consults for each message is the task's own options.
    run_chunk = celery_app.tasks[RUN_CHUNK_TASK]
    assert run_chunk.acks_late is True
    assert run_chunk.reject_on_worker_lost is True
    # An unacked chunk returns to the queue the workers read, after the visibility timeout.
    route = celery_app.amqp.router.route({}, RUN_CHUNK_TASK, args=(), kwargs={})
    assert route["queue"].name == settings.task_queue == conf.task_default_queue
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility == settings.visibility_timeout_seconds
