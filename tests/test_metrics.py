"""/metrics on prometheus-client, parsed as a scraper parses it (issue #10, item 3).

The cases of the issue: a `_total` series typed gauge, no HELP lines, label
values not escaped, durations as summaries without buckets; and the metrics
item 3 asks for: ingest and embed durations, texts embedded, the applied commit
(one series), chunks per domain.
"""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from botreg.daemon.metrics import Metrics
from botreg.daemon.run import Daemon, DaemonOptions
from botreg.daemon.sync import SyncOptions
from botreg.events.log import read_events
from conftest import git
from helpers import write
from sync_helpers import SyncHarness, commit


def families(text: str) -> dict[str, Any]:
    """The exposition parsed by prometheus-client's own parser, by family name."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Any, name: str | None = None) -> list[Sample]:
    return [s for s in family.samples if name is None or s.name == name]


def value(family: Any, name: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def check_well_formed(text: str) -> dict[str, Any]:
    """Every family typed and documented; `_total` only on counters; histograms bucketed."""
    parsed = families(text)
    assert parsed
    for name, family in parsed.items():
        assert family.documentation.strip(), f"{name} has no HELP"
        assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
        for sample in family.samples:
            if sample.name.endswith("_total"):
                assert family.type == "counter", f"{sample.name} is a {family.type}"
        if family.type == "counter":
            assert not name.endswith("_total")  # the parser strips it: the family is named
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        # buckets, not a summary: percentiles can be aggregated across daemons
        if family.type == "histogram" and family.samples:
            infinite = [s for s in family.samples if s.labels.get("le") == "+Inf"]
            assert infinite and all(s.name == f"{name}_bucket" for s in infinite), name
    return parsed


def test_a_real_cycle_exposes_typed_documented_metrics(git_registry: Path, tmp_path: Path) -> None:
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        first = h.sync()
        assert first.result == "synced"
        write(git_registry, "knowledge/billing/new.md", "# New\n\nA brand new paragraph.\n")
        commit(git_registry, "more knowledge")
        result = h.sync()
        assert result.result == "synced"
        head = git(git_registry, "rev-parse", "HEAD").strip()
        parsed = check_well_formed(h.syncer.metrics.render().decode())

        cycle = parsed["botreg_sync_cycle_duration_seconds"]
        assert cycle.type == "histogram"
        assert value(cycle, "botreg_sync_cycle_duration_seconds_count") == 2
        # the whole cycle, not the whole plus its phases counted again
        assert value(cycle, "botreg_sync_cycle_duration_seconds_sum") == (
            first.durations["cycle"] + result.durations["cycle"]
        )
        phases = parsed["botreg_sync_phase_duration_seconds"]
        assert {s.labels["phase"] for s in samples(phases)} >= {"fetch", "validate", "ingest"}
        assert "cycle" not in {s.labels["phase"] for s in samples(phases)}

        ingest = parsed["botreg_ingest_duration_seconds"]
        assert ingest.type == "histogram"
        for domain in ("billing", "product"):
            assert value(ingest, "botreg_ingest_duration_seconds_count", domain=domain) == 2

        embed = parsed["botreg_embed_duration_seconds"]
        assert embed.type == "histogram"
        assert value(embed, "botreg_embed_duration_seconds_count") >= 2  # one batch per cycle+
        texts = parsed["botreg_embedded_texts"]
        assert texts.type == "counter"
        embedded = value(texts, "botreg_embedded_texts_total")
        assert embedded == value(parsed["botreg_chunks_embedded"], "botreg_chunks_embedded_total")
        assert embedded > 0

        info = parsed["botreg_applied_commit_info"]
        assert info.type == "gauge"
        # one series, the new head: the first commit's label is gone
        assert [(s.labels, s.value) for s in samples(info)] == [({"commit": head}, 1.0)]

        chunks = parsed["botreg_chunks"]
        assert chunks.type == "gauge"
        ledger = h.syncer.ledger
        for state in ledger.domains():
            expected = len(ledger.all_chunk_ids(state.collection))
            assert expected > 0
            assert value(chunks, "botreg_chunks", domain=state.domain) == expected

        assert "process_resident_memory_bytes" in parsed  # process metrics
        assert parsed["botreg_last_success_timestamp_seconds"].type == "gauge"
    finally:
        h.close()


def test_chunk_gauges_follow_removed_domains_and_a_restart(
    git_registry: Path, tmp_path: Path
) -> None:
    write(git_registry, "knowledge/extra/notes.md", "# Notes\n\nSome extra notes.\n")
    commit(git_registry, "extra domain")
    h = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        assert h.sync().result == "synced"
        chunks = families(h.syncer.metrics.render().decode())["botreg_chunks"]
        assert {s.labels["domain"] for s in samples(chunks)} == {"billing", "product", "extra"}
        shutil.rmtree(git_registry / "knowledge/extra")
        commit(git_registry, "drop extra")
        assert h.sync().result == "synced"
        chunks = families(h.syncer.metrics.render().decode())["botreg_chunks"]
        assert {s.labels["domain"] for s in samples(chunks)} == {"billing", "product"}
    finally:
        h.close()
    # a restart with nothing new: the gauges come from the ledger, not the next commit
    again = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        assert again.sync().result == "noop"
        parsed = families(again.syncer.metrics.render().decode())
        head = git(git_registry, "rev-parse", "HEAD").strip()
        assert [s.labels for s in samples(parsed["botreg_applied_commit_info"])] == [
            {"commit": head}
        ]
        assert {s.labels["domain"] for s in samples(parsed["botreg_chunks"])} == {
            "billing",
            "product",
        }
    finally:
        again.close()


def test_label_values_are_escaped() -> None:
    # Domains and commits cannot carry quotes (identifiers, hex), so a direct metric
    # proves the exposition escapes what a label could hold.
    metrics = Metrics()
    nasty = 'a"b\\c\nd'
    metrics.gauge("botreg_test_labels", "A gauge with a hostile label", ["name"]).labels(
        name=nasty
    ).set(1)
    text = metrics.render().decode()
    line = next(x for x in text.splitlines() if x.startswith("botreg_test_labels{"))
    assert line == 'botreg_test_labels{name="a\\"b\\\\c\\nd"} 1.0'
    family = families(text)["botreg_test_labels"]
    assert [s.labels for s in family.samples] == [{"name": nasty}]


def test_metrics_over_http_from_a_running_daemon(git_registry: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = Daemon(
        SyncOptions(git_registry.as_uri(), data_dir=data),
        DaemonOptions(interval=3600, listen="127.0.0.1:0"),
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any(
            e["type"] == "botreg.sync.completed"
            for e in (
                read_events(data / "events.jsonl") if (data / "events.jsonl").exists() else []
            )
        ):
            assert time.monotonic() < deadline, "no cycle completed"
            time.sleep(0.05)
        assert daemon.http is not None
        with urllib.request.urlopen(f"http://{daemon.http.address}/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            text = r.read().decode()
    finally:
        daemon.stop()
        thread.join(timeout=30)
    parsed = check_well_formed(text)
    assert value(parsed["botreg_sync_cycles"], "botreg_sync_cycles_total", result="synced") == 1
    assert parsed["botreg_sync_cycle_duration_seconds"].type == "histogram"
    assert parsed["botreg_events"].type == "counter"
