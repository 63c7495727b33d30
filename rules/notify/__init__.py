"""Notifications: alerts to people (ntfy, webhooks, e-mail) and to andon hardware (MQTT).

Pure parts, every `now` passed in: `routing` (which route, which people), `quiet`
(quiet hours), `dispatch` (grouping, escalation, resolved notices), `message` (what a
notification says, its idempotency key), `tokens` (signed ack links). I/O parts, with an
injected clock: `outbox` (SQLite WAL), `worker` (retries), `channels/`, `notifier`.

This file imports nothing: linemon/config.py imports `rules.notify.config`, and anything
heavier here would make that a cycle.
"""
