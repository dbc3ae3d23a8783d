"""Bounded parsing under the operator's ceilings (issue #9).

Every hostile input observed on main becomes a finding with a position, the
same in the hook (`botreg validate`), in a worker thread, and in one daemon
cycle, which rejects the commit instead of crashing. Exhaustion cases run at a
small scale with lowered ceilings: they prove the bound without paying for it.
"""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest

from botreg.changes.keydiff import diff_values
from botreg.cli import main
from botreg.knowledge.chunkers import chunk_file
from botreg.registry.content import ContentError, decompress_bounded, load_json_bounded
from botreg.registry.limits import (
    Ceilings,
    CeilingsError,
    add_ceiling_arguments,
    apply_ceiling_arguments,
    current_ceilings,
)
from botreg.registry.settings import ChunkingSettings, Limits, RegistrySettings
from botreg.registry.source import WorkingTreeSource
from botreg.registry.yamlfast import YamlLoadError, load_fast
from botreg.validation.crossfile import iter_resource_refs
from botreg.validation.portability import find_portability_issues, has_resource_references
from botreg.validation.runner import Report, validate_registry
from helpers import validate, write
from sync_helpers import SyncHarness, commit

BOT = "bots/product-guide.yaml"
PLANS = "knowledge/billing/plans.json"


def found(report: Report, path: str) -> list[tuple[str, int, int]]:
    return [(f.code, f.line, f.column) for f in report.findings if f.path == path]


def set_bot_value(registry: Path, line: str) -> None:
    """Replace the bot's description line with `line`."""
    bot = registry / BOT
    text = bot.read_text()
    old = "description: Helps new users get started and find features."
    assert old in text
    bot.write_text(text.replace(old, line))


def nested_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def alias_chain(levels: int, key: str = "chain") -> str:
    """A mapping whose aliases nest `levels` deep once expanded (2 levels as written)."""
    lines = [f"{key}:", "  l0: &l0 [x]"]
    lines += [f"  l{i}: &l{i} [*l{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_bomb(keys: int, merges: int) -> str:
    """One anchored mapping of `keys` keys, merged into `merges` mappings."""
    lines = ["base: &base"] + [f"  k{i}: {i}" for i in range(keys)]
    lines += [f"m{i}: {{<<: *base}}" for i in range(merges)]
    return "\n".join(lines) + "\n"


# --- the loader --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: 0o²", "0o²"),  # was int('²', 8): ValueError ('²'.isdigit() is True)
        ("a: 0o8", "0o8"),
        ("a: 0x", "0x"),
        ("a: 0x_1", "0x_1"),  # int() would accept the underscore
        ("a: 0x 1", "0x 1"),  # int() would strip the space
        ("a: -0x1", "-0x1"),  # the core schema has no signed hex
        ("a: 0b101", "0b101"),
        ("a: 1_000", "1_000"),
        ("a: 0x7FFFFFFFFFFFFFFF", 2**63 - 1),
        ("a: -9223372036854775808", -(2**63)),
        ("a: 0o777", 511),
        ("a: 00000000000000000000000000001", 1),  # leading zeros are not magnitude
    ],
)
def test_number_edge_cases_load(text: str, value: object) -> None:
    assert load_fast(text) == {"a": value}


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "7" * 5000,  # Python refuses int() of over 4300 digits: was a crash
        "a: 9223372036854775808",
        "a: -9223372036854775809",
        "a: 0xFFFFFFFFFFFFFFFF",
        "a: 0o" + "7" * 30,
        "a: !!int " + "1" * 5000,
        "a: 1e999",  # a float literal that overflows to infinity
        "a: .inf",
        "a: -.Inf",
        "a: .NaN",
        "a: !!float .nan",
    ],
)
def test_numbers_beyond_the_bounds_are_br107_at_the_value(text: str) -> None:
    with pytest.raises(YamlLoadError) as info:
        load_fast(text)
    [problem] = info.value.problems
    assert (problem.code, problem.line, problem.column) == ("BR107", 1, 4)
    assert len(problem.message) < 300  # a 5,000-digit number is not echoed


def test_integer_width_follows_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTREG_MAX_INT_BITS", "16")
    assert load_fast("a: 32767") == {"a": 32767}
    with pytest.raises(YamlLoadError) as info:
        load_fast("a: 32768")
    assert info.value.problems[0].code == "BR107"


def test_expanded_depth_is_bounded_while_loading() -> None:
    text = alias_chain(1200)  # syntactically 3 levels deep; 1,201 once expanded
    with pytest.raises(YamlLoadError) as info:
        load_fast(text)
    [problem] = info.value.problems
    assert problem.code == "BR104" and "deeper than 200 levels" in problem.message
    # refused at the first alias that crosses the bound, not after building everything
    assert problem.line == 2 + 198  # l198: 1 + 2 + 198 levels
    assert load_fast(alias_chain(198))["chain"]["l197"] is not None  # within the bound


def test_merged_keys_count_before_they_are_copied() -> None:
    # 1,000 keys merged 200 times: 200,000 values once merged
    with pytest.raises(YamlLoadError) as info:
        load_fast(merge_bomb(1000, 200))
    [problem] = info.value.problems
    assert problem.code == "BR104" and "100000 values" in problem.message
    # the 99th merge crosses 100,000 (1,002 values per merging mapping, as many
    # before them): counted at the alias, before the mapping ends and keys are copied
    assert problem.line == 1 + 1000 + 98 + 1
    assert len(load_fast(merge_bomb(1000, 90))) == 91


def test_values_beyond_the_ceiling_without_aliases_are_br108(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTREG_MAX_VALUES", "50")
    with pytest.raises(YamlLoadError) as info:
        load_fast("a: [" + ", ".join(["1"] * 60) + "]")
    assert info.value.problems[0].code == "BR108"
    with pytest.raises(ContentError) as error:
        load_json_bounded("[" + ", ".join(["1"] * 60) + "]")
    assert error.value.code == "BR108"
    assert load_json_bounded("[" + ", ".join(["[]"] * 48) + "]") is not None  # 49 values


def test_bounds_passed_in_cannot_exceed_the_ceilings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTREG_MAX_DEPTH", "5")
    generous = Limits(max_depth=1000)
    with pytest.raises(YamlLoadError):
        load_fast("[[[[[[1]]]]]]", generous)
    with pytest.raises(ContentError):
        load_json_bounded("[[[[[[1]]]]]]", generous)
    assert load_fast("[[[[[1]]]]]", generous) == [[[[[1]]]]]
    with pytest.raises(YamlLoadError):  # and bounds can lower them
        load_fast("[[[1]]]", Limits(max_depth=2))


# --- JSON knowledge ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "line", "column"),
    [
        (nested_json(10_000), "BR105", 1, 1 + 6 * 200),  # was RecursionError
        (nested_json(980), "BR105", 1, 1 + 6 * 200),  # passed the hook, failed the daemon
        ('{"a": [1, 2],\n "b": ' + "9" * 5000 + "}", "BR107", 2, 7),
        ('{"t": NaN}', "BR107", 1, 7),
        ('{"t": -Infinity}', "BR107", 1, 7),
        ('{"t": 1e400}', "BR107", 1, 7),
        ('{"a": 1,\n "a": 2}', "BR102", 2, 2),
        ('{"a": "[[[[", "b": "]]"}', None, 0, 0),  # brackets in strings do not nest
    ],
)
def test_json_is_parsed_within_bounds(text: str, code: str | None, line: int, column: int) -> None:
    if code is None:
        assert load_json_bounded(text) == {"a": "[[[[", "b": "]]"}
        return
    with pytest.raises(ContentError) as info:
        load_json_bounded(text)
    assert (info.value.code, info.value.line, info.value.column) == (code, line, column)


def test_the_chunker_uses_the_bounded_parser() -> None:
    with pytest.raises(ContentError) as info:
        chunk_file(PLANS, nested_json(10_000).encode(), ChunkingSettings(), Limits())
    assert info.value.code == "BR105"
    with pytest.raises(ContentError) as info:
        chunk_file("knowledge/x/a.yaml", alias_chain(1200).encode(), ChunkingSettings(), Limits())
    assert info.value.code == "BR104"


# --- settings and ceilings ---------------------------------------------------------------


def test_registry_yaml_can_lower_limits_but_not_raise_them() -> None:
    ceilings = Ceilings(max_file_bytes=1000, max_decompressed_bytes=2000, max_compression_ratio=5)
    raised = {
        "limits": {
            "max_file_bytes": 10**9,
            "max_decompressed_bytes": 2**40,
            "max_compression_ratio": 1e9,
        }
    }
    assert RegistrySettings.from_data(raised, ceilings).limits == Limits(
        max_file_bytes=1000, max_decompressed_bytes=2000, max_compression_ratio=5.0
    )
    lowered = {"limits": {"max_file_bytes": 10, "max_compression_ratio": 2}}
    limits = RegistrySettings.from_data(lowered, ceilings).limits
    assert (limits.max_file_bytes, limits.max_decompressed_bytes) == (10, 2000)
    assert limits.max_compression_ratio == 2.0
    for bad in (float("inf"), float("nan"), -1, True):
        bad_ratio = {"limits": {"max_compression_ratio": bad}}
        assert RegistrySettings.from_data(bad_ratio, ceilings).limits.max_compression_ratio == 5.0
    assert RegistrySettings.from_data(None, ceilings).limits.max_file_bytes == 1000


def test_decompression_never_exceeds_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTREG_MAX_DECOMPRESSED_BYTES", "4096")
    data = gzip.compress(os.urandom(3000).hex().encode())  # 6,000 bytes, ratio ~2
    with pytest.raises(ContentError) as info:
        decompress_bounded(data, Limits(max_decompressed_bytes=2**40))
    assert info.value.code == "BR503"
    # an infinite ratio (was OverflowError in int(len * inf)) is clamped to the ceiling
    assert decompress_bounded(gzip.compress(b"ok"), Limits(max_compression_ratio=float("inf")))


def test_ceilings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert current_ceilings() == Ceilings()
    monkeypatch.setenv("BOTREG_MAX_FILE_BYTES", "1_000")
    monkeypatch.setenv("BOTREG_MAX_COMPRESSION_RATIO", "12.5")
    assert current_ceilings() == Ceilings(max_file_bytes=1000, max_compression_ratio=12.5)
    for name, value in [
        ("BOTREG_MAX_DEPTH", "deep"),
        ("BOTREG_MAX_DEPTH", "0"),
        ("BOTREG_MAX_VALUES", "-5"),
        ("BOTREG_MAX_COMPRESSION_RATIO", "inf"),
        ("BOTREG_MAX_COMPRESSION_RATIO", "nan"),
        ("BOTREG_MAX_INT_BITS", "100000"),
    ]:
        with pytest.raises(CeilingsError, match=name):
            Ceilings.from_env({name: value})


def test_ceiling_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setenv("BOTREG_MAX_DEPTH", "50")
    parser = argparse.ArgumentParser()
    add_ceiling_arguments(parser)
    ceilings = apply_ceiling_arguments(parser.parse_args(["--max-values", "10"]))
    assert (ceilings.max_depth, ceilings.max_values) == (50, 10)
    assert current_ceilings() is ceilings
    with pytest.raises(CeilingsError, match="--max-depth"):
        apply_ceiling_arguments(parser.parse_args(["--max-depth", "x"]))


def test_an_invalid_ceiling_is_a_usage_error(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOTREG_MAX_DEPTH", "deep")
    assert main(["validate", "--repo", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "BOTREG_MAX_DEPTH" in err and "Traceback" not in err


# --- every walker: any depth, any thread ------------------------------------------------


def test_walkers_are_iterative() -> None:
    deep: object = {"$resource": "db", "type": "databases"}
    for _ in range(3_000):  # beyond the recursion limit; the loader never yields this
        deep = {"k": [deep]}
    assert has_resource_references(deep)
    [(pointer, rtype, name)] = list(iter_resource_refs(deep))
    assert (len(pointer), rtype, name) == (6_000, "databases", "db")
    token_deep: object = "sk-" + "Zq3Xv9Lm2Np8Rt4Ws6Yb1Kd7Hf5Jg0Tc" * 2
    for _ in range(6_000):
        token_deep = {"api_key": token_deep}
    assert [i.code for i in find_portability_issues(token_deep)] == ["BR303"]
    old: object = 1
    new: object = 2
    for _ in range(3_000):
        old, new = {"k": old}, {"k": new}
    [change] = diff_values(old, new)
    assert change.kind == "changed" and change.path.count(".") == 2_999


def test_keydiff_keeps_document_order() -> None:
    old = {"a": 1, "tools": [{"name": "x", "v": 1}, {"name": "y", "v": 1}], "z": 1}
    new = {"a": 2, "tools": [{"name": "y", "v": 2}, {"name": "x", "v": 1}], "z": 2}
    assert [(c.path, c.kind) for c in diff_values(old, new)] == [
        ("a", "changed"),
        ("tools[y].v", "changed"),
        ("tools", "reordered"),
        ("z", "changed"),
    ]


# --- validate, a worker thread, and one daemon cycle agree -------------------------------


def hostile(registry: Path) -> dict[str, str]:
    """Write the observed hostile files; returns path -> the code each must get."""
    write(registry, "knowledge/billing/deep.json", nested_json(10_000))
    write(registry, "knowledge/billing/deep980.json", nested_json(980))
    write(registry, "knowledge/product/chain.yaml", alias_chain(1200))
    write(registry, "knowledge/product/merges.yaml", merge_bomb(1000, 200))
    write(registry, "bots/chain-bot.yaml", "name: Chain\n" + alias_chain(1200, "metadata"))
    write(registry, "bots/big-int.yaml", "name: Big\nmetadata:\n  n: " + "9" * 5000 + "\n")
    set_bot_value(registry, "description: 0o²")  # a plain string: valid, no crash
    bot = registry / "bots/billing-assistant.yaml"
    text = bot.read_text()
    assert "temperature: 0.2" in text
    bot.write_text(text.replace("temperature: 0.2", "temperature: .nan"))
    settings = registry / "registry.yaml"
    settings.write_text(
        settings.read_text().replace("max_compression_ratio: 100", "max_compression_ratio: .inf")
    )
    return {
        "knowledge/billing/deep.json": "BR105",
        "knowledge/billing/deep980.json": "BR105",
        "knowledge/product/chain.yaml": "BR104",
        "knowledge/product/merges.yaml": "BR104",
        "bots/chain-bot.yaml": "BR104",
        "bots/big-int.yaml": "BR107",
        "bots/billing-assistant.yaml": "BR107",
        "registry.yaml": "BR107",
    }


def codes_by_path(findings: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path, code in findings:
        out.setdefault(path, code)
    return out


def test_hostile_files_are_findings_in_validate_and_a_worker_thread(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = hostile(registry)
    assert main(["validate", "--repo", str(registry)]) == 1
    out = capsys.readouterr().out
    for path, code in expected.items():
        assert f"{path}:" in out and code in out
    main_thread = validate_registry(WorkingTreeSource(registry))
    assert codes_by_path([(f.path, f.code) for f in main_thread.findings]) == expected
    assert found(main_thread, "bots/big-int.yaml") == [("BR107", 3, 6)]
    assert found(main_thread, "bots/billing-assistant.yaml")[0][0] == "BR107"
    assert found(main_thread, BOT) == []  # `0o²` is the string "0o²"

    result: list[Report] = []
    worker = threading.Thread(
        target=lambda: result.append(validate_registry(WorkingTreeSource(registry)))
    )
    worker.start()
    worker.join()
    [threaded] = result
    assert [(f.path, f.code, f.line, f.column) for f in threaded.findings] == [
        (f.path, f.code, f.line, f.column) for f in main_thread.findings
    ]


def test_one_daemon_cycle_rejects_the_hostile_commit(git_registry: Path, tmp_path: Path) -> None:
    expected = hostile(git_registry)
    bad = commit(git_registry, "hostile")
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = harness.sync()
        assert (result.result, result.exit_code) == ("rejected", 1)
        [rejected] = harness.events
        assert rejected.type == "botreg.sync.rejected" and rejected.data["to"] == bad
        got = codes_by_path([(f["path"], f["code"]) for f in rejected.data["findings"]])
        assert got == expected
        assert "NaN" not in (tmp_path / "data" / "events.jsonl").read_text()
    finally:
        harness.close()


def test_registry_yaml_cannot_raise_its_own_limits(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The observed case at 1/1000 scale: ceilings lowered, registry.yaml raising
    # every limit far above them in the same change.
    monkeypatch.setenv("BOTREG_MAX_FILE_BYTES", "60000")
    monkeypatch.setenv("BOTREG_MAX_DECOMPRESSED_BYTES", "65536")
    settings = registry / "registry.yaml"
    settings.write_text(
        settings.read_text()
        .replace("max_file_bytes: 5242880", "max_file_bytes: 1073741824")
        .replace("max_decompressed_bytes: 52428800", "max_decompressed_bytes: 1073741824")
        .replace("max_compression_ratio: 100", "max_compression_ratio: 100000")
    )
    write(registry, "knowledge/billing/bomb.md.gz", gzip.compress(b"# A\n" + b"a" * 1_000_000))
    write(
        registry, "knowledge/billing/wide.md.gz", gzip.compress(os.urandom(50_000).hex().encode())
    )
    write(registry, "knowledge/billing/big.md", "# Big\n\n" + "word " * 15000)
    report = validate_registry(WorkingTreeSource(registry))
    assert found(report, "knowledge/billing/bomb.md.gz") == [("BR503", 1, 1)]  # ratio ~1000
    assert found(report, "knowledge/billing/wide.md.gz") == [("BR503", 1, 1)]  # 100 KB > 64 KiB
    assert found(report, "knowledge/billing/big.md") == [("BR504", 1, 1)]
    assert RegistrySettings.from_data(load_fast(settings.read_text())).limits == Limits(
        max_file_bytes=60000, max_decompressed_bytes=65536
    )


def raise_limits_in_registry_yaml(registry: Path) -> None:
    settings = registry / "registry.yaml"
    settings.write_text(
        settings.read_text()
        .replace("max_decompressed_bytes: 52428800", "max_decompressed_bytes: 1073741824")
        .replace("max_compression_ratio: 100", "max_compression_ratio: 100000")
    )


def test_the_snapshot_every_command_reads_has_clamped_limits(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # validate, review, ingest and sync all read limits through Snapshot.settings
    from botreg.registry.snapshot import Snapshot

    monkeypatch.setenv("BOTREG_MAX_DECOMPRESSED_BYTES", "65536")
    raise_limits_in_registry_yaml(registry)
    limits = Snapshot(WorkingTreeSource(registry)).settings.limits
    assert (limits.max_decompressed_bytes, limits.max_compression_ratio) == (65536, 100.0)


def test_a_daemon_cycle_keeps_the_ceilings_when_registry_yaml_raises_them(
    git_registry: Path, tmp_path: Path
) -> None:
    raise_limits_in_registry_yaml(git_registry)
    # inflates 5,000 times (a 2.5 MB stand-in for the observed 1 GiB bomb)
    write(git_registry, "knowledge/billing/bomb.md.gz", gzip.compress(b"# A\n" + b"a" * 2_500_000))
    commit(git_registry, "raise the limits and add a bomb")
    harness = SyncHarness(git_registry.as_uri(), tmp_path / "data")
    try:
        result = harness.sync()
        assert result.result == "rejected"
        [rejected] = harness.events
        assert [(f["path"], f["code"]) for f in rejected.data["findings"]] == [
            ("knowledge/billing/bomb.md.gz", "BR503")
        ]
    finally:
        harness.close()


def test_a_document_at_the_depth_bound_gets_the_same_findings_in_a_thread(registry: Path) -> None:
    # Within the bound, every check runs (schema, portability, positions) on the
    # deepest data the loader lets through: same findings on either thread.
    leaf = "{api_key: sk-" + "Zq3Xv9Lm2Np8Rt4Ws6Yb1Kd7Hf5Jg0Tc" * 2 + "}"
    for _ in range(197):  # root + metadata's mapping + 197 + the leaf: 200 levels
        leaf = f"{{k: {leaf}}}"
    write(registry, "bots/deep.yaml", f"name: Deep\nstatus: enabled\nmetadata: {{d: {leaf}}}\n")
    main_thread = validate_registry(WorkingTreeSource(registry), ["bots/deep.yaml"])
    result: list[Report] = []
    worker = threading.Thread(
        target=lambda: result.append(
            validate_registry(WorkingTreeSource(registry), ["bots/deep.yaml"])
        )
    )
    worker.start()
    worker.join()
    [threaded] = result
    codes = sorted(f.code for f in main_thread.findings)
    assert "BR201" in codes and "BR303" in codes
    assert [(f.code, f.line, f.column) for f in threaded.findings] == [
        (f.code, f.line, f.column) for f in main_thread.findings
    ]
    write(registry, "bots/deep.yaml", f"name: Deep\nmetadata: {{d: {{k: {leaf}}}}}\n")
    # one level more: refused at the `{` of level 201
    assert found(validate(registry), "bots/deep.yaml") == [("BR101", 2, 11 + 4 * 199)]


# --- the ceilings as flags of every command that reads the registry -----------------------


def test_every_registry_command_takes_the_ceiling_flags() -> None:
    from botreg.cli import build_parser

    parser = build_parser()
    for command in (
        ["validate"],
        ["review", "--base", "main"],
        ["resolve", "b", "--env", "e"],
        ["sync", "--source", "x"],
    ):
        args = parser.parse_args([*command, "--max-file-bytes", "100"])
        assert args.ceiling_max_file_bytes == "100", command
    for command in (["ingest"], ["query", "--domain", "d", "text"]):
        args = parser.parse_args([*command, "--max-depth", "7"])
        assert args.ceiling_max_depth == "7", command


def test_a_ceiling_flag_lowers_the_limit_for_validate(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(registry, "registry.yaml", "format_version: 1\nlimits:\n  max_file_bytes: 5000000\n")
    code = main(
        ["validate", "--repo", str(registry), "--max-file-bytes", "300", "--format", "json"]
    )
    out = capsys.readouterr().out
    assert code == 1 and '"BR504"' in out  # registry.yaml's 5 MB cannot raise the flag's 300
    # the flag held for that command only
    assert main(["validate", "--repo", str(registry)]) == 0


def test_an_invalid_ceiling_flag_is_a_usage_error(
    registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--repo", str(registry), "--max-depth", "deep"]) == 2
    err = capsys.readouterr().err
    assert "--max-depth" in err and "Traceback" not in err


def test_a_ceiling_flag_bounds_ingest(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    args = ["--repo", str(registry), "--data-dir", str(data), "--env", "development"]
    assert main(["ingest", *args, "--max-file-bytes", "300"]) == 1
    out = capsys.readouterr()
    assert "300" in out.out + out.err


def test_finding_messages_are_bounded(registry: Path) -> None:
    """A 300 KB key made a 300 KB finding (and rejected event, and status.json)."""
    write(registry, "environments/development.yaml", f"settings:\n  {'E' * 300_000}: 1\n")
    report = validate(registry)
    assert report.findings and all(len(f.message) <= 1100 for f in report.findings)
