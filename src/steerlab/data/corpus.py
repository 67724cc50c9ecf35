"""Corpora as lists of documents (plain text or chat messages), with a deterministic held-out split.

The offline default needs no download: Python's own English documentation (`pydoc_data.topics`,
~0.5 MB), the standard library's docstrings read with `ast` (nothing is imported or executed), and
chat-formatted question/answer pairs built from those passages (so the SAE also sees chat-template
tokens, as the instruct models are used).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, Union

from steerlab.errors import SteerlabError
from steerlab.paths import read_text

Message = dict[str, str]
Document = Union[str, list[Message]]

_MAX_CHARS = 2400  # split long passages so one document is a few hundred tokens


@dataclass
class Corpus:
    """A named list of documents; `split` holds out a fixed, content-hashed fraction for evaluation."""

    name: str
    documents: list[Document]

    def __len__(self) -> int:
        return len(self.documents)

    def split(self, held_out: float = 0.05) -> tuple["Corpus", "Corpus"]:
        """(train, held-out): a document goes to held-out iff its content hash falls below the fraction."""
        train, test = [], []
        for doc in self.documents:
            (test if _hash_fraction(doc) < held_out else train).append(doc)
        if not train or not test:
            raise SteerlabError(f"Corpus '{self.name}' is too small to hold out {held_out:.0%} of it; give more text.")
        return Corpus(self.name + ":train", train), Corpus(self.name + ":heldout", test)

    def chars(self) -> int:
        return sum(len(d) if isinstance(d, str) else sum(len(m["content"]) for m in d) for d in self.documents)


def _hash_fraction(doc: Document) -> float:
    text = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _chunks(text: str, limit: int = _MAX_CHARS) -> Iterator[str]:
    """Split text at paragraph boundaries into pieces of at most ~limit characters."""
    piece: list[str] = []
    size = 0
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        if size + len(para) > limit and piece:
            yield "\n\n".join(piece)
            piece, size = [], 0
        piece.append(para[: limit * 2])
        size += len(para)
    if piece:
        yield "\n\n".join(piece)


def pydoc_documents() -> list[tuple[str, str]]:
    """(topic, passage) pairs from the Python reference documentation shipped with Python."""
    from pydoc_data.topics import topics

    return [(name, chunk) for name in sorted(topics) for chunk in _chunks(topics[name])]


def stdlib_docstrings(max_chars: int = 3_000_000, min_len: int = 300) -> list[tuple[str, str]]:
    """(qualified name, docstring) pairs parsed (never imported) from the standard library sources."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[tuple[str, str]] = []
    total = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in ("test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo") for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        module = ".".join(rel.with_suffix("").parts)
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_len:
                name = module if node is tree else f"{module}.{node.name}"
                for chunk in _chunks(doc):
                    out.append((name, chunk))
                    total += len(chunk)
                    if total >= max_chars:
                        return out
    return out


_QUESTIONS = (
    "Can you explain {topic} in Python?",
    "What does the Python documentation say about {topic}?",
    "How does {topic} work?",
    "I'm learning Python. Tell me about {topic}.",
    "Summarise the rules for {topic}, please.",
    "What should I know about {topic}?",
)


def chat_documents(passages: Sequence[tuple[str, str]], fraction: float, seed: int) -> list[Document]:
    """Turn a fraction of (topic, passage) pairs into user/assistant conversations."""
    rng = random.Random(seed)
    out: list[Document] = []
    for topic, passage in passages:
        if rng.random() < fraction:
            question = rng.choice(_QUESTIONS).format(topic=topic.replace("_", " ").replace(".", " "))
            out.append([{"role": "user", "content": question}, {"role": "assistant", "content": passage}])
    return out


def default_corpus(seed: int = 0, chat_fraction: float = 0.3, stdlib_chars: int = 3_000_000) -> Corpus:
    """The built-in offline corpus: Python docs + stdlib docstrings, part of them as chat turns, shuffled."""
    passages = pydoc_documents() + stdlib_docstrings(max_chars=stdlib_chars)
    docs: list[Document] = [p for _, p in passages]
    docs += chat_documents(passages, chat_fraction, seed)
    random.Random(seed).shuffle(docs)
    return Corpus("default", docs)


def _read_jsonl(path: Path) -> list[Document]:
    docs: list[Document] = []
    for n, line in enumerate(read_text(path, "corpus file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SteerlabError(f"{path} line {n} is not valid JSON ({exc.msg}).") from exc
        docs.append(_row_document(row, f"{path} line {n}"))
    return docs


def _row_document(row: object, where: str) -> Document:
    if isinstance(row, str):
        return row
    if isinstance(row, dict):
        if isinstance(row.get("text"), str):
            return row["text"]
        if isinstance(row.get("messages"), list):
            return [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    raise SteerlabError(f"{where} has neither a 'text' string nor a 'messages' list.")


def _read_parquet(path: Path) -> list[Document]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SteerlabError("Reading Parquet needs pyarrow: pip install pyarrow.") from exc
    table = pq.read_table(path)
    column = "text" if "text" in table.column_names else "messages" if "messages" in table.column_names else None
    if column is None:
        raise SteerlabError(f"{path} has no 'text' or 'messages' column (columns: {', '.join(table.column_names)}).")
    return [_row_document({column: value}, str(path)) for value in table.column(column).to_pylist()]


def _read_file(path: Path) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        return list(_chunks(path.read_text(encoding="utf-8", errors="replace")))
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        try:
            rows = json.loads(read_text(path, "corpus file"))
        except json.JSONDecodeError as exc:
            raise SteerlabError(f"{path} is not valid JSON ({exc.msg}).") from exc
        rows = rows if isinstance(rows, list) else [rows]
        return [_row_document(row, f"{path} item {n}") for n, row in enumerate(rows, 1)]
    if suffix == ".parquet":
        return _read_parquet(path)
    raise SteerlabError(f"Cannot read corpus file {path}: use .txt, .md, .jsonl or .parquet.")


def _hf_dataset(name: str, split: str, limit: int) -> list[Document]:
    """Documents from a Hugging Face dataset (needs `datasets` and the network or a warm cache)."""
    try:
        import datasets
    except ImportError as exc:
        raise SteerlabError(
            f"Corpus '{name}' looks like a Hugging Face dataset; install `datasets` to use it."
        ) from exc
    try:
        stream = datasets.load_dataset(name, split=split, streaming=True)
        docs = []
        for row in stream:
            docs.append(_row_document(row, f"dataset {name}"))
            if len(docs) >= limit:
                break
        return docs
    except SteerlabError:
        raise
    except Exception as exc:  # connection, missing dataset, offline mode: many types
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        why = "HF_HUB_OFFLINE is set" if offline else f"{type(exc).__name__}"
        raise SteerlabError(
            f"Could not load Hugging Face dataset '{name}' ({why}); pass local files or use the default corpus."
        ) from exc


def load_corpus(spec: str | Sequence[str] | None = None, *, hf_split: str = "train", hf_limit: int = 50_000) -> Corpus:
    """A corpus from None/'default', local files or folders (txt/md/jsonl/parquet), or 'hf:NAME' / a dataset id."""
    if spec is None or spec == "default":
        return default_corpus()
    specs = [spec] if isinstance(spec, str) else list(spec)
    docs: list[Document] = []
    for item in specs:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in (".txt", ".md", ".jsonl", ".json", ".parquet")
            )
            if not files:
                raise SteerlabError(f"Folder {path} holds no .txt/.md/.jsonl/.parquet files.")
            for file in files:
                docs += _read_file(file)
        elif path.is_file():
            docs += _read_file(path)
        elif item.startswith("hf:") or ("/" in item and not item.startswith((".", "/", "~"))):
            docs += _hf_dataset(item.removeprefix("hf:"), hf_split, hf_limit)
        else:
            raise SteerlabError(
                f"Corpus '{item}' is neither a file, a folder nor a Hugging Face dataset id ('hf:NAME')."
            )
    docs = [d for d in docs if (d.strip() if isinstance(d, str) else d)]
    if not docs:
        raise SteerlabError(f"Corpus {specs} holds no text.")
    return Corpus(",".join(specs), docs)
