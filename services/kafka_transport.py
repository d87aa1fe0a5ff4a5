"""faust's aiokafka transport with a bounded fetch wait, for omnihub's workers.

faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer, and Tansu does not answer
a waiting fetch early when data arrives, so every hop of the pipeline waited up to 1.5 s
(measured: 0.75 s on average a hop; 2 ms with 50). There is no faust setting for it, so the
app builds its transport from these subclasses, whose consumer thread sets the app's
``fetch_max_wait_ms`` on the aiokafka consumer it creates.

(Tried and dropped: delivering each fetched batch to the streams under one flow-control race
instead of faust's per-message ``wait_first`` halved a bare agent's CPU an event, 138 -> 58 us,
but changed nothing measurable in the processors worker, 650-730 us an event either way.)
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver

#: The fetch wait when the app does not say (faust's own: 1,500 ms).
FETCH_MAX_WAIT_MS = 50


class ConsumerThread(driver.AIOKafkaConsumerThread):
    """The consumer thread, with the fetch wait bounded by the app's setting."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", FETCH_MAX_WAIT_MS)
        return consumer


class Consumer(driver.Consumer):
    """faust's aiokafka consumer, running ``ConsumerThread``."""

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    """The aiokafka transport with omnihub's consumer."""

    Consumer: ClassVar[type[Any]] = Consumer


class App(faust.App):
    """A faust app whose consumer is omnihub's (see this module); ``fetch_max_wait_ms``
    bounds how long a fetch waits for data."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS, **kw: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kw)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)
