"""The outbox shared by the sinks: one queue per sink, tokens kept, older files read."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from botreg.events.outbox import Outbox


def test_each_sink_has_its_own_queue(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    webhook, redis = Outbox(path), Outbox(path, sink="redis")
    webhook.enqueue("a", b"A")
    redis.enqueue("a", b"A", token=7)
    redis.enqueue("b", b"B", token=7)
    assert [e.id for e in webhook.batch(10)] == ["a"]
    assert [(e.id, e.token) for e in redis.batch(10)] == [("a", 7), ("b", 7)]
    # one sink's acknowledgement or dead letters never touch the other's line
    redis.delivered_through(redis.batch(10)[0].seq)
    assert [e.id for e in redis.batch(10)] == ["b"]
    assert webhook.stats()[0] == 1
    dead = webhook.expire(queued_before=float("inf"))
    assert [d.id for d in dead] == ["a"]
    assert redis.dead_letters() == [] and redis.stats()[0] == 1
    assert webhook.replay() == 1 and [e.id for e in webhook.batch(5)] == ["a"]
    assert [e.id for e in redis.batch(5)] == ["b"]


def test_an_older_outbox_is_the_webhooks(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, "
        "body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
        "queued_at REAL NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '')"
    )
    db.execute("INSERT INTO outbox (id, body, queued_at) VALUES ('old', x'7b7d', 1)")
    db.commit()
    db.close()
    # read without migrating (the events CLI beside a daemon): one queue, the webhook's
    assert [e.id for e in Outbox(path, create=False).batch(5)] == ["old"]
    # migrated by the daemon: its rows stay the webhook's, and Redis starts empty
    assert [e.id for e in Outbox(path).batch(5)] == ["old"]
    assert Outbox(path, sink="redis").batch(5) == []
