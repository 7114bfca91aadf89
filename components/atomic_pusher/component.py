"""TFX Pusher with integer, atomically published versions (see executor.py)."""
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import executor_spec

from components.atomic_pusher import executor


class AtomicPusher(Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
