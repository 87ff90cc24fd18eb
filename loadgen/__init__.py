"""The load generator behind ``civicwatch loadgen``: simulated gateways publish realistic
violation events at a set rate.

Two modes share one event simulator:

* direct (default): a few MQTT connections publish at QoS 1 and time each message from publish
  to ingest's IngestAck (p50/p95/p99), as a benchmark of ingest.
* durable (``--outbox-dir``): each gateway keeps the real edge delivery code, an
  ``edge.outbox.Outbox`` on disk drained by an ``edge.publisher.EdgePublisher``, so a killed
  loadgen restarted with the same folder replays what ingest never confirmed. Every message that
  enters an outbox is also written, in the same SQLite statement (a trigger), to a ``ledger``
  table: the exact set of ids the edge committed to deliver, which chaos tests compare with the
  database.

The simulated cameras must exist in the server's site registry: ``--write-config FILE`` writes a
config (from ``--config`` if given, its sites replaced) whose registry holds them.

Modules: ``registry`` (the simulated cameras), ``events`` (the event builder tests and benchmarks
share too, and the simulated incidents), ``measure`` (acks, latency, progress, what was stored),
``ledger`` (durable mode's record), ``run`` (both modes and the command). It imports the wire
contract, the edge's outbox and publisher (durable mode) and storage (its report), never the
server sides or the composition root, which hands it the config loader.
"""
