"""The runtime every omnihub worker runs on (the processors and the dispatcher).

- ``app``: the faust app factory (``faust_app``), the topics of raw bytes (``raw_topic``), the
  ready marker and the runner (``run_faust``: uvloop, log levels, GC tuning);
- ``transport``: everything omnihub changes in faust, in one place: the aiokafka driver's
  consumer thread, consumer and transport subclassed (fetch wait and least fetch size, one
  flow-control race a fetched batch, an early fetch once a full stream buffer drains) and
  ``App._new_transport`` overridden to build them;
- ``batches``: handling a batch durably (retried, isolated, dead-lettered) before its ack;
- ``decode``: raw records to pydantic models, what fails to dead letters;
- ``resources``: the PostgreSQL pool and the producer a worker's agents share;
- ``runtime``: the garbage collector's tuning (also used by the web processes);
- ``metrics``: the counters every worker keeps.

The faust adjustments were checked against faust-streaming 0.15.3 (with aiokafka 0.14.0 and
mode-streaming 0.7.1, see ``constraints.txt``): ``FAUST_CHECKED`` and ``AIOKAFKA_CHECKED``
below, which ``tests/test_worker_faust.py`` compares with what is installed, and whose private
attributes and methods it checks one by one, so that an upgrade fails there, loudly, rather
than in a running worker. Read the changed faust and aiokafka code again before moving them.
"""

#: The faust-streaming version ``services.worker.transport`` was checked against.
FAUST_CHECKED = "0.15.3"
#: The aiokafka version whose private consumer attributes ``transport`` sets.
AIOKAFKA_CHECKED = "0.14.0"
