"""Transactional outbox: events are rows committed with the change they describe; a relay
thread in each API process moves them to the Redis events stream and then deletes them.

A committed change therefore always produces its event, even if the process dies right after the
commit: the row stays, and the next relay (here or in another process) sends it. A relay sends a
batch and deletes it in one transaction; if it dies between the two, or two relays read the same
rows (SQLite has no SKIP LOCKED), an event is sent twice. Consumers treat events as "re-read the
experiment" hints, so a duplicate is harmless, and the relay's own commit can skip the WAL flush
(``synchronous_commit`` off): losing it in a crash only means sending those events again.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.orm import Session
from sqlalchemy.orm import sessionmaker

from services.api.models import Experiment
from services.api.models import OutboxEvent
from shared.messages import Event
from shared.messages import EventType
from shared.names import EVENTS_STREAM

log = logging.getLogger(__name__)

BATCH = 500
#: Keep the events stream bounded (approximate trim).
STREAM_MAXLEN = 100_000
#: After a wake-up, wait this long so that a burst of commits goes out as one batch.
DEBOUNCE_S = 0.01


def record(session: Session, event_type: EventType, experiment: Experiment) -> None:
    """Add an event to the current transaction."""
    session.add(OutboxEvent(type=event_type, experiment_id=experiment.id, created=time.time()))


class Relay:
    """Moves outbox rows to Redis. `notify` after a commit wakes it at once; otherwise it polls."""

    def __init__(self, sessions: sessionmaker[Session], client: redis.Redis, poll_s: float = 1.0):
        self._sessions = sessions
        self._redis = client
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def notify(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(self._poll_s):
                self._stop.wait(DEBOUNCE_S)
            self._wake.clear()
            try:
                while self.relay_once() == BATCH:
                    pass
            except Exception:  # noqa: BLE001 - Redis or the database is down: retry next tick
                log.warning("outbox relay failed; will retry", exc_info=True)
                self._stop.wait(self._poll_s)

    def relay_once(self) -> int:
        """Send and delete up to `BATCH` rows; return how many were sent."""
        with self._sessions() as session:
            batch = select(OutboxEvent).order_by(OutboxEvent.id).limit(BATCH)
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                batch = batch.with_for_update(skip_locked=True)
            rows = list(session.scalars(batch))
            if not rows:
                return 0
            pipe = self._redis.pipeline(transaction=False)
            for row in rows:
                event = Event(type=EventType(row.type), experiment_id=row.experiment_id, id=row.id)
                pipe.xadd(
                    EVENTS_STREAM,
                    {"event": event.to_json()},
                    maxlen=STREAM_MAXLEN,
                    approximate=True,
                )
            pipe.execute()
            session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_([r.id for r in rows])))
            session.commit()
            return len(rows)
