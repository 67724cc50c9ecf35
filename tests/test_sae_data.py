"""Corpora: the offline default (deterministic, held-out split disjoint), user files, and clear errors."""

from __future__ import annotations

import json

import pytest

from steerlab.data import Corpus, load_corpus
from steerlab.data.corpus import chat_documents, pydoc_documents, stdlib_docstrings
from steerlab.errors import SteerlabError


def test_offline_sources_need_no_download():
    passages = pydoc_documents()
    assert len(passages) > 100 and any("for" == topic for topic, _ in passages)
    docs = stdlib_docstrings(max_chars=50_000)
    assert sum(len(d) for _, d in docs) >= 50_000 and all(len(d) <= 4800 for _, d in docs)
    chats = chat_documents(passages[:50], fraction=1.0, seed=0)
    assert len(chats) == 50 and chats[0][0]["role"] == "user" and chats[0][1]["content"] == passages[0][1]


def test_held_out_split_is_deterministic_and_disjoint():
    corpus = Corpus("c", [f"document {i}" for i in range(400)])
    train, test = corpus.split(0.1)
    again_train, again_test = Corpus("c", list(reversed(corpus.documents))).split(0.1)
    assert set(test.documents) == set(again_test.documents)  # by content, not by order
    assert not set(train.documents) & set(test.documents)
    assert 20 <= len(test) <= 60
    with pytest.raises(SteerlabError, match="too small"):
        Corpus("one", ["x"]).split(0.05)


def test_user_files(tmp_path):
    (tmp_path / "a.txt").write_text("First paragraph.\n\nSecond paragraph.")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"text": "json text"}) + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    )
    (tmp_path / "c.json").write_text(json.dumps([{"text": "array item"}]))
    corpus = load_corpus(str(tmp_path))
    assert "json text" in corpus.documents and "array item" in corpus.documents
    assert [{"role": "user", "content": "hi"}] in corpus.documents
    assert any("First paragraph." in d for d in corpus.documents if isinstance(d, str))


def test_corpus_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(SteerlabError, match="line 2 is not valid JSON"):
        load_corpus(str(tmp_path / "bad.jsonl"))
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(SteerlabError, match="neither a 'text'"):
        load_corpus(str(tmp_path / "nofield.jsonl"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(SteerlabError, match="Cannot read corpus file"):
        load_corpus(str(tmp_path / "x.csv"))
    with pytest.raises(SteerlabError, match="neither a file"):
        load_corpus("missing-file.txt")
    with pytest.raises(SteerlabError, match="dataset"):
        load_corpus("hf:nobody/nothing")  # no `datasets` installed, or offline: one sentence either way
