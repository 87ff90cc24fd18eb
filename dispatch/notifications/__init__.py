"""Notifications to departments: signed webhooks and a per-department MQTT topic, via an outbox.

The audit log is the source. A ``Notifier`` tails it (``audit_cursors`` row "notifications") and,
for each entry a department must hear about, writes ``notifications`` rows in the same
transaction that moves the cursor: a crash either keeps both or neither, so a restart neither
repeats nor skips an entry. A ``NotificationSender`` then delivers due rows, retrying with
exponential backoff and jitter; rows that run out of attempts stay ``failed`` until a dispatcher
retries them (``POST /api/v1/notifications/{id}/retry``).

Webhook requests are signed: ``X-Civicwatch-Signature: sha256=HEX`` where HEX is the
HMAC-SHA256, keyed with the webhook's secret, of ``f"{X-Civicwatch-Timestamp}.{body}"``
(docs/notifications.md shows how a receiver checks it).
"""
