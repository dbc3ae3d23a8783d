"""Leaks an independent attacker found after the first redaction pass (issue #9, item 4).

Each case was seen in clear on main: secrets below secret-like containers, more
token shapes and PEM spellings, the tail of a private key split by the chunker,
the operator's allowed secret variables and credential files, a token written
as a URL's user name, a key that is a token, and BR107 echoing a long number.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from botreg.cli import main
from botreg.daemon.http import DaemonHTTP
from botreg.resolve import resolve_for_display
from botreg.secrets import (
    MASK,
    find_token,
    is_secret_key,
    mask_config,
    mask_text,
)
from helpers import codes, validate, write
from sync_helpers import SyncHarness, commit

CRED = "Zq8vN3xLp2Rt7Wm4Kd9Fh6JsCREDLEAK"
LIST = "Zq8vN3xLp2Rt7Wm4Kd9Fh6JsLISTLEAK"
BEARER = "Zq8vN3xLp2Rt7Wm4Kd9Fh6JsBEARERLEAK"
PASSPHRASE = "PASSPHRASELEAK-9f8Ae7Bq"
URL_USER = "LEAKUSERTOKEN1234567890ab"
TOKEN_KEY = "ghp_" + "Lk7Qw2Er9Ty4Ui1Op6As3Df8Gh5Jk0Zx2Cv7Bn"
PEM_BODY = ("MIIEpAIBAAKCAQEA3TailLeakLineOne", "Bq9TailLeakLineTwoXyZ")
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----\n"
)

CONTAINERS = (
    "metadata:\n"
    "  credentials:\n"
    "    username: svc-bot\n"
    f"    pass: {CRED}\n"
    f"  api_keys: [{LIST}]\n"
    f"  curl_example: \"curl -H 'Authorization: Bearer {BEARER}' https://api.acme.example/v1\"\n"
    f"  passphrase: {PASSPHRASE}\n"
)


def _bot_with(registry: Path, extra: str) -> Path:
    bot = registry / "bots/billing-assistant.yaml"
    bot.write_text(bot.read_text().replace("metadata:\n", extra, 1))
    return bot


# --- 1. secret containers, key names and token shapes ------------------------------------


def test_secrets_below_secret_containers_are_masked() -> None:
    masked = mask_config(
        {
            "credentials": {"username": "svc-bot", "pass": CRED, "type": "basic"},
            "api_keys": [LIST, "${API_KEY}"],
            "curl_example": f"curl -H 'Authorization: Bearer {BEARER}' https://x.example/v1",
            "passphrase": PASSPHRASE,
            "tokens": ["tok-one-1234"],
            "passwords": {"db": "pw-db-1234"},
            "secrets": {"db": "sec-db-1234"},
            "auth": {"basic": "bob:hunter2"},
            "bearer": "bearer-value-1",
            "cookie": "session=abc123",
            "pass": "pass-value-1",
            "max_tokens": 1024,  # a count, not a credential
        }
    )
    assert masked == {
        "credentials": {"username": MASK, "pass": MASK, "type": "basic"},
        "api_keys": [MASK, "${API_KEY}"],  # a reference stays readable
        "curl_example": f"curl -H 'Authorization: Bearer {MASK}' https://x.example/v1",
        "passphrase": MASK,
        "tokens": [MASK],
        "passwords": {"db": MASK},
        "secrets": {"db": MASK},
        "auth": {"basic": MASK},
        "bearer": MASK,
        "cookie": MASK,
        "pass": MASK,
        "max_tokens": 1024,
    }


@pytest.mark.parametrize(
    "text",
    [
        "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dEfG",
        "xapp-1-A0123ABCD-4567890123-abcdef0123456789",
        "xoxe-1-My4xLTc2NTQzMjEwOTgtYWJj",
        "Authorization: Basic Ym9iOmh1bnRlcjJwYXNz",
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nSsh2BodyLeak77\n"
        "---- END SSH2 ENCRYPTED PRIVATE KEY ----",
        "-----BEGIN  RSA PRIVATE KEY-----\nTwoSpacesBodyLeak77\n-----END  RSA PRIVATE KEY-----",
        "host=db password=hunter2 user=x",
    ],
)
def test_more_credential_shapes_are_masked_and_found(text: str) -> None:
    masked = mask_text(f"see {text} here")
    for secret in (
        "aB3dE5",
        "A0123ABCD",
        "My4xLTc2",
        "Ym9iOmh1",
        "Ssh2Body",
        "TwoSpaces",
        "hunter2",
    ):
        assert secret not in masked
    assert MASK in masked and masked.startswith("see ") and masked.endswith(" here")
    assert find_token(text) is not None


def test_new_key_names_and_no_new_false_positives() -> None:
    for key in ("api_keys", "tokens", "passwords", "secrets", "bearer", "cookie", "passphrase"):
        assert is_secret_key(key), key
    assert is_secret_key("pass") and is_secret_key("db_pass")
    for key in ("max_tokens", "bypass", "compass", "sort_keys", "cookie_name", "secret_name"):
        assert not is_secret_key(key), key
    prose = "Send Bearer tokens; Basic authentication; Authorization: Bearer YOUR_API_KEY"
    assert mask_text(prose) == prose and find_token(prose) is None
    assert mask_text("password=${PG_PASSWORD} host=db") == "password=${PG_PASSWORD} host=db"


def test_validate_refuses_secrets_below_containers(registry: Path) -> None:
    _bot_with(registry, CONTAINERS + "  api_key_refs: ['${API_KEY}']\n" + "  owner_note: ok\n")
    report = validate(registry)
    found = sorted((f.code, f.json_pointer) for f in report.findings)
    assert found == [
        ("BR303", "/metadata/curl_example"),
        ("BR304", "/metadata/api_keys/0"),
        ("BR304", "/metadata/credentials/pass"),
        ("BR304", "/metadata/passphrase"),
    ]
    for finding in report.findings:  # findings never quote the secret
        assert not any(s in finding.message for s in (CRED, LIST, BEARER, PASSPHRASE))


def test_a_reference_below_a_secret_container_is_fine(registry: Path) -> None:
    _bot_with(
        registry,
        "metadata:\n  credentials:\n    username: svc-bot\n    pass: ${SVC_PASS}\n"
        "  api_keys: ['${API_KEY_1}', '${API_KEY_2:}']\n",
    )
    assert codes(validate(registry)) == []


def test_review_and_events_mask_a_changed_value_below_a_secret_container() -> None:
    """Key diffs (review, bot events) judged `auth.basic` by its own key."""
    from botreg.changes.keydiff import diff_values

    old = {"auth": {"basic": "bob:oldpass1"}, "credentials": {"username": "svc-bot"}}
    new = {"auth": {"basic": "bob:hunter2"}, "credentials": {"username": "svc-bot2"}}
    changes = [c.to_dict() for c in diff_values(old, new)]
    assert [c["path"] for c in changes] == ["auth.basic", "credentials.username"]
    assert all(c["old"] == MASK and c["new"] == MASK for c in changes)


# --- 2. a private key split by the chunker ---------------------------------------------


def test_the_tail_of_a_split_private_key_is_masked() -> None:
    tail = f"{PEM_BODY[1]}\n-----END RSA PRIVATE KEY-----\nAfter the key."
    assert mask_text(tail) == f"{MASK}\nAfter the key."
    assert mask_text("No key here, just an END of story.") == "No key here, just an END of story."


def test_query_responses_mask_the_tail_chunk() -> None:
    """GET /knowledge/{domain}/query returned the chunk after BEGIN in clear."""
    chunks = [
        {"text": PEM.split(PEM_BODY[1])[0], "source": "notes.md"},
        {"text": PEM_BODY[1] + PEM.split(PEM_BODY[1])[1] + "Next section", "source": "notes.md"},
    ]
    http = DaemonHTTP(
        "127.0.0.1",
        0,
        status=lambda: {},
        metrics=lambda: "",
        wake=lambda: None,
        query=lambda d, q, k: chunks,
        readiness=lambda: (True, []),
        hook_secret=lambda: None,
        branch="main",
    )
    http.start()
    try:
        url = f"http://{http.address}/knowledge/billing/query?q=key"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        http.stop()
    assert "Next section" in body  # the answer is there ...
    assert not any(line in body for line in PEM_BODY)  # ... without any line of the key


def test_validate_reports_credentials_in_knowledge_files(registry: Path) -> None:
    write(registry, "knowledge/billing/keys.md", f"# Ops notes\n\nThe key:\n\n{PEM}\nDone.\n")
    write(registry, "knowledge/billing/hf.txt", "token hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE\n")
    write(
        registry,
        "knowledge/billing/howto.md",  # documentation examples: no finding
        "# Calling the API\n\nSend `Authorization: Bearer <your token>` or\n"
        "`Authorization: Bearer Zq8vN3xLp2Rt7Wm4Kd9Fh6Js` and connect with\n"
        "postgres://user:secret@db.example/bots (host=db password=example).\n",
    )
    report = validate(registry)
    assert codes(report, "knowledge/billing/keys.md") == ["BR303"]
    assert codes(report, "knowledge/billing/hf.txt") == ["BR303"]
    assert codes(report, "knowledge/billing/howto.md") == []
    pem = next(f for f in report.findings if f.path == "knowledge/billing/keys.md")
    assert pem.line == 5 and "private key" in pem.message and "rotate" in pem.message
    assert not any(line in pem.message for line in PEM_BODY)


# --- 3. the operator's allowed secret variables and credential files -------------------


@pytest.mark.parametrize(
    "value",
    [
        "Bearer CHROMAHDRLEAK",
        # quoted by repr() in the message: a backslash doubles, quotes escape
        "Bearer CHROMA\\HDRLEAK",
        "Bearer CHROMA'HDR\"LEAK",
    ],
)
def test_an_allowed_secret_variable_is_masked_in_errors_status_and_events(
    git_registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CHROMA_AUTH_HEADER", value)
    env = git_registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace(
            "    type: persistent\n    path: chroma            # relative to the data dir\n",
            "    type: http\n    host: ${CHROMA_AUTH_HEADER}\n    port: 18802\n",
        )
    )
    commit(git_registry, "store host from a secret variable")
    data = tmp_path / "data"
    harness = SyncHarness(git_registry.as_uri(), data, allow_env=("CHROMA_*",))
    try:
        result = harness.sync()
    finally:
        harness.close()
    assert result.result == "failed"
    failed = harness.of("botreg.sync.failed")
    assert failed and MASK in json.dumps(failed[0].data)  # the host is shown masked
    surfaces = {
        "events.jsonl": (data / "events.jsonl").read_text(),
        "status.json": (data / "status.json").read_text(),
        "event": json.dumps(failed[0].data),
    }
    assert {n: "HDR" in t for n, t in surfaces.items()} == {n: False for n in surfaces}


def test_an_all_digit_secret_variable_is_masked_when_served() -> None:
    config = {"metadata": {"region_hint": "${CHROMA_API_KEY}", "port": "${CHROMA_PORT}"}}
    shown = resolve_for_display(
        config,
        {},
        ["CHROMA_*"],
        {"CHROMA_API_KEY": "98765432123456", "CHROMA_PORT": "18802"},
    )
    assert shown["metadata"] == {"region_hint": MASK, "port": 18802}


def test_remembered_secrets_are_masked_everywhere() -> None:
    from botreg.secrets import remember_secret  # new API (imported here: the module loads on main)

    remember_secret("Bearer RememberedHdr91")
    remember_secret("short")  # under 6 characters: ignored
    assert mask_text("at RememberedHdr91:443") == f"at {MASK}:443"
    assert mask_text("a short word") == "a short word"
    remember_secret(55512345678901)
    assert mask_config({"n": 55512345678901, "ok": 1}) == {"n": MASK, "ok": 1}


def test_sync_token_files_are_masked_everywhere(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("TokenFileContent8817\n")
    missing = (tmp_path / "no-such-repo").as_uri()
    args = ["sync", "--source", missing, "--once", "--data-dir", str(tmp_path / "d")]
    assert main([*args, "--token-file", str(token)]) == 1
    assert mask_text("git said TokenFileContent8817") == f"git said {MASK}"


def test_the_daemon_log_masks_an_allowed_secret_variable(
    git_registry: Path, tmp_path: Path
) -> None:
    env = git_registry / "environments/development.yaml"
    env.write_text(
        env.read_text().replace(
            "    type: persistent\n    path: chroma            # relative to the data dir\n",
            "    type: http\n    host: ${CHROMA_AUTH_HEADER}\n    port: 18802\n",
        )
    )
    commit(git_registry, "store host from a secret variable")
    command = [sys.executable, "-m", "botreg", "sync", "--source", git_registry.as_uri()]
    done = subprocess.run(
        [*command, "--once", "--data-dir", str(tmp_path / "d"), "--allow-env", "CHROMA_*"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**_environ(), "CHROMA_AUTH_HEADER": "Bearer CHROMAHDRLEAK"},
    )
    assert done.returncode == 1 and "18802" in done.stderr  # the failure is logged
    assert "CHROMAHDRLEAK" not in done.stderr + done.stdout


def _environ() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONUNBUFFERED": "1"}


# --- 4. a token as a URL's user name -----------------------------------------------------


def test_a_token_as_url_user_name_is_masked_and_refused(registry: Path) -> None:
    url = f"https://{URL_USER}@git.example.com/r.git"
    assert mask_text(f"clone {url}") == f"clone https://{MASK}@git.example.com/r.git"
    plain = "https://git@github.com/acme/r.git and ssh://deploy@host.example/x"
    assert mask_text(plain) == plain  # an ordinary user name stays
    bot = registry / "bots/billing-assistant.yaml"
    bot.write_text(
        bot.read_text().replace("system_prompt: |\n", f"system_prompt: |\n  Mirror: {url}\n")
    )
    report = validate(registry)
    assert codes(report) == ["BR303"] and URL_USER not in report.findings[0].message


# --- 5. validate: a key that is a token; BR107 under a secret key ------------------------


def test_a_key_that_is_a_token_is_refused(registry: Path) -> None:
    _bot_with(registry, f"metadata:\n  {TOKEN_KEY}:\n    nested: x\n")
    report = validate(registry)
    assert codes(report) == ["BR303"]
    finding = report.findings[0]
    assert TOKEN_KEY not in finding.message and TOKEN_KEY not in finding.json_pointer
    assert finding.line == _line_of(registry / "bots/billing-assistant.yaml", "ghp_")


def test_br107_does_not_echo_the_number(registry: Path) -> None:
    bot = registry / "bots/billing-assistant.yaml"
    number = "98765432109876543210123"
    bot.write_text(bot.read_text().replace("  max_tokens: 1024\n", f"  api_key: {number}\n"))
    report = validate(registry)
    assert codes(report) == ["BR107"]
    message = report.findings[0].message
    assert number not in message and "98765432" not in message and "23 digits" in message


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("creds", "Zq8vK2mP9xL4wN7tR3yB6", "Zq8vK2mP9xL4wN7tR3yB6"),
        ("hdr", 'curl -H "X-Api-Key: Zq8vK2mP9xL4wN7tR3yB6" https://x', "Zq8vK2mP9xL4wN7tR3yB6"),
        ("npm", "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "a1B2c3D4e5F6g7H8i9J0"),
        (
            "slack",
            "https://hooks.slack.com/services/T000/B000/Zq8vK2mP9xL4wN7tR3yB6",
            "Zq8vK2mP9xL4wN7tR3yB6",
        ),
        ("frag", "https://x.example/#access_token=Zq8vK2mP9xL4wN7tR3yB6", "Zq8vK2mP9xL4wN7tR3yB6"),
        ("pem", "-----begin rsa private key-----\nQUJDRA==\n-----end rsa private key-----", "QUJD"),
    ],
)
def test_more_shapes_found_by_the_second_attack(key: str, value: str, secret: str) -> None:
    """What a second attack on the merged work still got through (issue #9)."""
    from botreg.secrets import mask_config

    shown = mask_config({"metadata": {"extras": {key: value}}})
    assert secret not in str(shown)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('{"password": "Zq8vK2mP9xL4wN7tR3yB6"}', '{"password": ***}'),
        ("mysql --password Zq8vK2mP9xL4wN7tR3yB6 -h db", "mysql --password *** -h db"),
        # not secrets: a placeholder, a reference, plain flags, a reference key
        ('{"password": "example"}', '{"password": "example"}'),
        ("mysql --password ${DB_PW} -h db", "mysql --password ${DB_PW} -h db"),
        ("run --name product-guide --max-tokens 512", "run --name product-guide --max-tokens 512"),
        ('{"token_url": "https://a.example/t"}', '{"token_url": "https://a.example/t"}'),
    ],
)
def test_secrets_named_in_quoted_text_and_on_command_lines(text: str, shown: str) -> None:
    from botreg.secrets import mask_text

    assert mask_text(text) == shown


def test_a_query_token_in_the_source_never_rests_in_the_mirror_config(tmp_path: Path) -> None:
    """`--source https://host/repo.git?private_token=...`: mirror.git/config (0644)
    keeps the masked URL; git gets the real one from the daemon's environment."""
    import subprocess

    from botreg.git.mirror import GitMirror

    source = "https://git.example.invalid/team/bots.git?private_token=QueryTok3n9981"
    mirror = GitMirror(tmp_path / "mirror.git", source, "main")
    config = (tmp_path / "mirror.git" / "config").read_text()
    assert "QueryTok3n9981" not in config and "private_token=" in config
    assert "QueryTok3n9981" not in mirror.url
    env = {**os.environ, **mirror._environment()}
    url = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "mirror.git"), "ls-remote", "--get-url", "origin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert url == source  # what git fetches from is the real URL
