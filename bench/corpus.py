"""Synthetic registries and knowledge corpora for the benchmarks (deterministic for a size).

`build_corpus` writes the ingestion benchmarks' Markdown documents: each section
is one chunk, and documents have 1 to 40 sections (skewed towards short ones,
about 10 on average: 20,000 chunks in 2,000 files), so a run's chunks do not
line up with any batch size (LangChain's `index()` works in batches of 100
documents: a file whose chunks straddle two batches shows its batch-edge costs).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from botreg.resources import template_dir

PROVIDERS = [
    "  provider: anthropic\n  model: claude-sonnet-4-5\n  temperature: 0.{t}\n"
    "  api_key: ${{ANTHROPIC_API_KEY}}\n",
    "  provider: openai\n  model: gpt-4o-mini\n  max_tokens: {n}\n  api_key: ${{OPENAI_API_KEY}}\n",
    "  provider: ollama\n  model: llama3.1:8b\n  endpoint:\n    $resource: local-llm\n"
    "    type: llm_providers\n",
]


def bot_text(i: int, domains: list[str]) -> str:
    rnd = random.Random(i)
    picked = rnd.sample(domains, k=2)
    llm = PROVIDERS[i % len(PROVIDERS)].format(t=rnd.randint(0, 9), n=rnd.randint(200, 4000))
    return (
        "# yaml-language-server: $schema=https://botreg.dev/schemas/v1/bot.schema.json\n"
        f"name: Bot number {i}\n"
        f"description: Synthetic bot {i} for the benchmark, team {i % 40}.\n"
        f"status: {'active' if i % 7 else 'inactive'}\n"
        f"llm:\n{llm}"
        "system_prompt: |\n"
        f"  You are assistant {i}. Answer questions about {picked[0]} and {picked[1]}.\n"
        "  Be concise, cite your sources, and never invent prices.\n"
        "memory:\n  type: buffer\n  max_messages: 20\n"
        f"knowledge:\n  domains: [{', '.join(picked)}]\n"
        "  retrieval:\n    top_k: 5\n    min_score: 0.25\n"
        "conversation_storage:\n  $resource: conversations\n  type: databases\n"
        "tools:\n"
        "  - name: lookup_invoice\n    type: http\n    description: Fetch an invoice.\n"
        "    endpoint:\n      $resource: billing-api\n      type: http_endpoints\n"
        "    method: GET\n    path: /invoices/{id}\n"
        f"  - name: search\n    type: knowledge_search\n    domain: {picked[0]}\n"
        f"metadata:\n  owner: team-{i % 40}\n  tier: {'internal' if i % 3 else 'customer'}\n"
    )


def knowledge_file(i: int) -> tuple[str, str]:
    rnd = random.Random(10_000 + i)
    words = (
        "refund invoice plan seat workspace project automation export billing "
        "customer support policy shortcut release feature limit"
    ).split()

    def sentence() -> str:
        return " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 16))).capitalize() + "."

    kind = i % 5
    if kind == 0:
        body = json.dumps(
            {"id": i, "items": [{"name": f"item {j}", "text": sentence()} for j in range(5)]},
            indent=2,
        )
        return "json", body + "\n"
    if kind == 1:
        rows = "\n".join(
            f"{j},{sentence().replace(',', '')},{rnd.randint(1, 99)}" for j in range(10)
        )
        return "csv", "id,text,score\n" + rows + "\n"
    if kind == 2:
        return "txt", "\n\n".join(sentence() + " " + sentence() for _ in range(4)) + "\n"
    if kind == 3:
        return "yaml", "".join(f"topic_{j}:\n  summary: {sentence()}\n" for j in range(5))
    sections = "".join(f"## Section {j}\n\n{sentence()} {sentence()}\n\n" for j in range(4))
    return "md", f"# Document {i}\n\n{sentence()}\n\n{sections}"


WORDS = (
    "refund invoice plan seat workspace project automation export billing customer support "
    "policy shortcut release feature limit account payment card transfer approval guest "
    "history version template member role permission audit report schedule reminder"
).split()
MAX_SECTIONS = 40


def paragraph(rnd: random.Random) -> str:
    """2 to 4 sentences of 8 to 12 words: one chunk with its heading, well within the
    chunker's token budget."""
    sentences = []
    for _ in range(rnd.randint(2, 4)):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(8, 12))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def sections_of(i: int) -> int:
    """How many sections (chunks) document `i` has: 1 to 40, mostly few."""
    return min(MAX_SECTIONS, 1 + int(MAX_SECTIONS * random.Random(f"sections-{i}").random() ** 3))


def document(i: int) -> str:
    """The Markdown text of document `i` (`## Section s of document i` headings)."""
    rnd = random.Random(i)
    body = [f"# Document {i}\n"]
    for s in range(sections_of(i)):
        body.append(f"## Section {s} of document {i}\n\n{paragraph(rnd)}\n")
    return "\n".join(body)


def doc_path(i: int) -> str:
    """Where document `i` lives, relative to the registry root."""
    return f"knowledge/docs/part-{i % 20:02d}/doc-{i:05d}.md"


def build_corpus(root: Path, files: int) -> None:
    """`files` documents under `root`/knowledge/docs (1 to 40 chunks each), and a
    minimal registry.yaml."""
    (root / "knowledge" / "docs").mkdir(parents=True, exist_ok=True)
    if not (root / "registry.yaml").exists():
        (root / "registry.yaml").write_text("format_version: 1\n")
    for i in range(files):
        path = root / doc_path(i)
        path.parent.mkdir(exist_ok=True)
        path.write_text(document(i))


def build_registry(root: Path, bots: int = 2000, knowledge: int = 500) -> Path:
    """The template plus `bots` bots and `knowledge` knowledge files in 5 domains."""
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(template_dir(), root)
    domains = ["billing", "product", "legal", "onboarding", "security"]
    for domain in domains[2:]:
        (root / "knowledge" / domain).mkdir(parents=True)
    for i in range(bots):
        (root / "bots" / f"bot-{i:04d}.yaml").write_text(bot_text(i, domains))
    for i in range(knowledge):
        ext, text = knowledge_file(i)
        folder = root / "knowledge" / domains[i % len(domains)] / f"part-{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc-{i:04d}.{ext}").write_text(text)
    return root
