"""The README's five-minute tour, run for real.

`python tests/tour.py` runs every step of the tour in a temporary folder and
prints the blocks; `python tests/tour.py --update` writes them into README.md
(between the `<!-- tour:NAME -->` markers) and the sample review into
docs/review.md. tests/test_readme.py runs the tour again and checks that the
README holds exactly its output, shas, times and paths aside.

The commands run as a user types them (botreg, git, sed, pre-commit from the
interpreter's own bin folder), verbatim: only the git identity and dates are
fixed. `botreg init` pins the new registry's hook to the clone botreg was
installed from, at its HEAD (botreg.hook_source), so `pre-commit install --install-hooks` and
the commits build the hook from this checkout's last commit (pip fetches its
dependencies), as on a user's fresh machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "README",
    "STEPS",
    "Step",
    "StepRun",
    "blocks_in",
    "normalise",
    "render",
    "run_tour",
    "uncommitted_code",
    "update",
]

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
REVIEW_PAGE = PROJECT / "docs" / "review.md"
HOME = "/home/you"  # where the tour's folder is shown to be
CLONE = "/home/you/src/botreg"  # where this checkout is shown to be

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Registry Editor",
    "GIT_AUTHOR_EMAIL": "editor@example.com",
    "GIT_COMMITTER_NAME": "Registry Editor",
    "GIT_COMMITTER_EMAIL": "editor@example.com",
    "GIT_AUTHOR_DATE": "2026-11-01T12:00:00",
    "GIT_COMMITTER_DATE": "2026-11-01T12:00:00",
    "TZ": "UTC",
    "GIT_CONFIG_NOSYSTEM": "1",
    "PRE_COMMIT_COLOR": "never",
}


@dataclass(frozen=True)
class Step:
    """One block of the tour: the commands shown and the exit code of the last one."""

    name: str
    commands: tuple[str, ...]
    expect: int = 0


STEPS = (
    Step("init", ("botreg init my-registry", "cd my-registry")),
    Step("validate", ("botreg validate",)),
    Step(
        "hook",
        (
            "pre-commit install --install-hooks",
            "sed -i 's/status: active/status: paused/' bots/billing-assistant.yaml",
            "git commit -qam 'Pause the billing assistant'",
        ),
        expect=1,
    ),
    Step(
        "review",
        (
            "git checkout -q . && git switch -q -c faster-guide",
            "sed -i 's/model: gpt-4o-mini/model: gpt-4o/' bots/product-guide.yaml",
            "sed -i 's/take 5 to 10$/take 5 to 7/' knowledge/billing/policies/refunds.md",
            "git commit -qam 'Product guide on gpt-4o, faster card refunds'",
            "botreg review --base main --format text",
        ),
    ),
    Step(
        "sync",
        ("git switch -q main", "git merge -q faster-guide", "botreg sync --source . --once"),
    ),
    Step("query", ("botreg query --domain billing -k 1 'how long do card refunds take?'",)),
    Step("resolve", ("botreg resolve billing-assistant --env development",)),
    Step("status", ("botreg status",)),
)


@dataclass(frozen=True)
class StepRun:
    """What one step printed (commands and their output, as a terminal shows it)."""

    step: Step
    text: str
    exit_code: int


def _environment(root: Path) -> dict[str, str]:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BOTREG_", "GIT_", "GITHUB_", "PRE_COMMIT", "XDG_"))
        and not k.endswith(("_API_KEY", "_TOKEN"))
    }
    bin_dir = str(Path(sys.executable).parent)
    return {
        **keep,
        **GIT_ENV,
        "HOME": str(root / "home"),
        "PRE_COMMIT_HOME": str(root / "pre-commit-home"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "COLUMNS": "100",
    }


def run_tour(root: Path) -> list[StepRun]:
    """Run every step in `root` (an empty folder); the output with `root` shown as HOME."""
    (root / "home").mkdir()
    env = _environment(root)
    cwd = root
    runs = []
    for step in STEPS:
        lines: list[str] = []
        code = 0
        for command in step.commands:
            lines.append(f"$ {command}")
            if command.startswith("cd "):
                cwd = cwd / command[3:]
                continue
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            code = done.returncode
            output = "\n".join(
                line.rstrip()
                for line in done.stdout.replace(str(root), HOME)
                .replace(str(PROJECT), CLONE)
                .splitlines()
            ).strip("\n")
            if output:
                lines.append(output)
        runs.append(StepRun(step, "\n".join(lines) + "\n", code))
    return runs


_SHA = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
_DURATION = re.compile(r"\b\d+(?:\.\d+)? ?(?:s|ms)\b")


def normalise(text: str) -> str:
    """`text` with what differs between two runs (shas, times, durations) replaced."""
    # Progress lines appear only when a step takes over 5 s (a slow machine).
    lines = [line for line in text.splitlines() if " botreg.daemon.progress: " not in line]
    text = "".join(line.rstrip() + "\n" for line in lines)
    text = _TIME.sub("<time>", text)
    text = _SHA.sub("<sha>", text)
    return _DURATION.sub("<duration>", text)


def render(run: StepRun) -> str:
    """The README block of one step, markers included."""
    name = run.step.name
    return f"<!-- tour:{name} -->\n```console\n{run.text}```\n<!-- /tour:{name} -->"


def blocks_in(text: str) -> dict[str, str]:
    """The tour blocks of a README: step name -> the block's text (commands and output)."""
    pattern = re.compile(r"<!-- tour:([a-z]+) -->\n```console\n(.*?)```\n<!-- /tour:\1 -->", re.S)
    return {m.group(1): m.group(2) for m in pattern.finditer(text)}


def _replace_blocks(text: str, runs: list[StepRun]) -> str:
    for run in runs:
        name = run.step.name
        pattern = re.compile(rf"<!-- tour:{name} -->\n.*?<!-- /tour:{name} -->", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- tour:{name} --> block")
        text = pattern.sub(lambda _m, run=run: render(run), text)
    return text


def _review_sample() -> str:
    """What `python tests/review_sample.py` prints (the sample pull request's review)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "review_sample.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def uncommitted_code(project: Path = PROJECT) -> list[str]:
    """Files of botreg's code that differ from HEAD (`git status --porcelain` lines).

    The hook step installs botreg from the checkout's HEAD, not its working tree:
    output written while the code is uncommitted would show the old hook (the
    README once showed `1 files` after validate said `1 file`).
    """
    done = subprocess.run(
        ["git", "-C", str(project), "status", "--porcelain", "--", "src", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def update() -> None:
    """Rewrite the README's tour blocks and docs/review.md's sample from real runs.

    Refused while botreg's code has uncommitted changes (see `uncommitted_code`).
    """
    dirty = uncommitted_code()
    if dirty:
        raise SystemExit(
            "commit botreg's code first: the tour's hook installs botreg from HEAD, so "
            "its output would be the last commit's:\n" + "\n".join(dirty)
        )
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_tour(Path(tmp))
    README.write_text(_replace_blocks(README.read_text(), runs))
    page = REVIEW_PAGE.read_text()
    start = "<!-- sample-review:start -->\n````markdown\n"
    end = "````\n<!-- sample-review:end -->"
    head, _, rest = page.partition(start)
    _, _, tail = rest.partition(end)
    REVIEW_PAGE.write_text(head + start + _review_sample() + end + tail)
    for run in runs:
        if run.exit_code != run.step.expect:
            print(f"step {run.step.name}: exit {run.exit_code}, expected {run.step.expect}")


def main(argv: list[str]) -> int:
    """`--update` rewrites the blocks; without it, print them."""
    if argv == ["--update"]:
        update()
        return 0
    if argv:
        print("usage: python tests/tour.py [--update]", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for run in run_tour(Path(tmp)):
            print(render(run), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
