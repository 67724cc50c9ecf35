"""Content identity and atomic writes: model folders and GGUF conversions by their bytes, writes all-or-nothing."""

import json
import os

import pytest
import torch

import steerlab
from steerlab.errors import SteerlabError
from steerlab.models import gguf_cache
from steerlab.paths import atomic_dir, atomic_path, file_digest, read_text, write_json, write_text
from steerlab.testing.tiny import tiny_model


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))


def _save(model, folder):
    with atomic_dir(folder) as tmp:
        model.hf.save_pretrained(tmp, safe_serialization=True)
        model.tokenizer.save_pretrained(tmp)


def test_a_folder_rebuilt_at_the_same_path_gets_a_new_fingerprint(tmp_path):
    folder = tmp_path / "organism"
    _save(tiny_model("llama", seed=0), folder)
    first = steerlab.load(str(folder))
    _save(tiny_model("llama", seed=1), folder)  # same path, same shapes, other weights
    second = steerlab.load(str(folder))
    assert first.revision.startswith("local:") and first.revision != second.revision
    assert first.fingerprint() != second.fingerprint()
    assert steerlab.load(str(folder)).revision == second.revision  # stable for unchanged files


def test_file_digest_follows_the_bytes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 100)
    before = file_digest(path)
    path.write_bytes(b"b" * 100)  # same size
    assert file_digest(path) != before


def test_gguf_conversion_is_verified_on_every_hit(tmp_path, monkeypatch):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    conversions = []

    def fake_convert(path, out):  # stands in for transformers' dequantiser (no tiny GGUF at hand)
        conversions.append(path)
        m = tiny_model("llama")
        m.hf.save_pretrained(out, safe_serialization=True)
        m.tokenizer.save_pretrained(out)

    monkeypatch.setattr(gguf_cache, "convert_gguf", fake_convert)
    target = gguf_cache.ensure_converted(gguf)
    assert gguf_cache.ensure_converted(gguf) == target and len(conversions) == 1  # a hit
    weights = next(target.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-8:] = b"\x7f" * 8  # the cached weights altered in place
    weights.write_bytes(bytes(data))
    assert not gguf_cache.cache_intact(target)
    assert gguf_cache.ensure_converted(gguf) == target and len(conversions) == 2  # detected and rebuilt
    assert gguf_cache.cache_intact(target)
    gguf.write_bytes(b"GGUF" + b"\1" * 64)  # another GGUF at the same path: another cache entry
    assert gguf_cache.converted_dir(gguf) != target


def test_writes_are_all_or_nothing(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"v": 1}
    folder = tmp_path / "sae"
    with atomic_dir(folder) as tmp:
        (tmp / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(folder) as tmp:
            (tmp / "weights").write_text("new, half")
            raise RuntimeError("killed")
    assert (folder / "weights").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "sae"]  # no temporaries left behind


def test_utf8_with_bom_and_a_sentence_for_other_encodings(tmp_path):
    good = tmp_path / "p.txt"
    good.write_bytes("\ufeffcafé\n".encode("utf-8"))
    assert read_text(good) == "café\n"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(SteerlabError, match=r"latin1.txt is not UTF-8 text"):
        read_text(bad, "prompts file")
    write_text(tmp_path / "o.txt", "naïve")
    assert (tmp_path / "o.txt").read_bytes() == "naïve".encode()


def test_sae_content_digest_tracks_weights():
    from steerlab.interventions.specs import SteerLatent
    from steerlab.sae.core import Sae, SaeConfig

    sae = Sae.random(SaeConfig(d_in=64, d_sae=16, layer=1), seed=0)
    before = SteerLatent(sae, 3, 2.0).fingerprint()
    with torch.no_grad():
        sae.W_dec[3] *= 2  # same source string, other weights
    assert SteerLatent(sae, 3, 2.0).fingerprint() != before


def test_cache_list_and_prune(tmp_path, capsys):
    from steerlab.cli.main import main

    root = tmp_path / "cache"
    (root / "models" / ".x.12.tmp").mkdir(parents=True)
    (root / "models" / "old-conversion").mkdir()
    (root / "saes" / "L3").mkdir(parents=True)
    (root / "saes" / "L3" / "w").write_bytes(b"1" * 2048)
    with pytest.raises(SystemExit) as done:
        main(["cache", "list"])
    assert done.value.code == 0 and "leftover" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["cache", "prune"])
    assert done.value.code == 0
    assert sorted(p.name for p in (root / "models").iterdir()) == [] and (root / "saes" / "L3" / "w").is_file()
    with pytest.raises(SystemExit):
        main(["cache", "prune", "--all"])
    assert not (root / "saes" / "L3").exists()
