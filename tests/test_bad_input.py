"""The bad-input catalogue: every command group, through the CLI entry point in-process (tiny models, no downloads).

Each case must exit with code 2, print one sentence (a usage error: click's usage line and one `Error:` line),
print no traceback, and write or change nothing (the inputs and the working folder are compared before and after).
Then: kill -9 during trial generation and during SAE training, each resumed to the same result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from steerlab.cli.main import main

USAGE, SENTENCE = "usage", "sentence"

# (id, argv with {placeholders}, kind, needle in the message)
CASES = [
    # generate / tokens / vectors (core)
    ("generate-missing-arg", ["generate"], USAGE, "Missing argument 'model'"),
    (
        "generate-wrong-type",
        ["generate", "{tiny}", "-p", "hi", "--max-new-tokens", "abc"],
        USAGE,
        "Invalid value for '--max-new-tokens'",
    ),
    ("generate-unknown-option", ["generate", "{tiny}", "--bogus"], USAGE, "No such option: --bogus"),
    (
        "generate-temperature-nan",
        ["generate", "{tiny}", "-p", "hi", "--temperature", "nan"],
        SENTENCE,
        "temperature must be a finite number",
    ),
    (
        "generate-temperature-inf",
        ["generate", "{tiny}", "-p", "hi", "--temperature", "inf"],
        SENTENCE,
        "temperature must be a finite number",
    ),
    ("generate-top-p-zero", ["generate", "{tiny}", "-p", "hi", "--top-p", "0"], SENTENCE, "top_p must be in (0, 1]"),
    (
        "generate-top-p-nan",
        ["generate", "{tiny}", "-p", "hi", "--top-p", "nan"],
        SENTENCE,
        "top_p must be a finite number",
    ),
    (
        "generate-repetition-nan",
        ["generate", "{tiny}", "-p", "hi", "--repetition-penalty", "nan"],
        SENTENCE,
        "repetition_penalty must be a finite",
    ),
    ("generate-seed-negative", ["generate", "{tiny}", "-p", "hi", "--seed", "-1"], SENTENCE, "--seed must lie in [0, "),
    (
        "generate-max-tokens-zero",
        ["generate", "{tiny}", "-p", "hi", "--max-new-tokens", "0"],
        SENTENCE,
        "--max-new-tokens must lie in [1, ",
    ),
    (
        "generate-strength-nan",
        ["generate", "{tiny}", "-p", "hi", "--steer", "vector={vec},strength=nan"],
        SENTENCE,
        "strength=nan is not a finite number",
    ),
    (
        "generate-strength-inf",
        ["generate", "{tiny}", "-p", "hi", "--steer", "vector={vec},strength=-inf"],
        SENTENCE,
        "is not a finite number",
    ),
    (
        "generate-strength-overflow",
        ["generate", "{tiny}", "-p", "hi", "--steer", "sae={sae},latent=3,strength=1e999"],
        SENTENCE,
        "is not a finite number",
    ),
    (
        "generate-clamp-nan",
        ["generate", "{tiny}", "-p", "hi", "--steer", "sae={sae},clamp=3,value=nan"],
        SENTENCE,
        "value=nan is not a finite number",
    ),
    (
        "generate-strength-word",
        ["generate", "{tiny}", "-p", "hi", "--steer", "vector={vec},strength=lots"],
        SENTENCE,
        "is not a number",
    ),
    (
        "generate-latent-range",
        ["generate", "{tiny}", "-p", "hi", "--steer", "sae={sae},latent=999,strength=2"],
        SENTENCE,
        "Latent 999 is out of range",
    ),
    (
        "generate-mask-layer",
        ["generate", "{tiny}", "-p", "hi", "--steer", "mask=head,layer=9,units=0"],
        SENTENCE,
        "out of range",
    ),
    (
        "generate-steer-malformed",
        ["generate", "{tiny}", "-p", "hi", "--steer", "strength=3"],
        SENTENCE,
        "Malformed --steer",
    ),
    ("generate-prompts-latin1", ["generate", "{tiny}", "--prompts-file", "{latin1}"], SENTENCE, "is not UTF-8 text"),
    (
        "generate-prompts-missing",
        ["generate", "{tiny}", "--prompts-file", "{inputs}/nope.txt"],
        SENTENCE,
        "does not exist",
    ),
    ("generate-prompt-empty", ["generate", "{tiny}", "-p", " "], SENTENCE, "A prompt is empty"),
    (
        "generate-unknown-model",
        ["generate", "no-such-model-xyz", "-p", "hi"],
        SENTENCE,
        "Unknown model 'no-such-model-xyz'",
    ),
    ("generate-bad-dtype", ["generate", "{tiny}", "-p", "hi", "--dtype", "float8"], SENTENCE, "Unknown dtype"),
    ("tokens-missing-arg", ["tokens", "{tiny}"], USAGE, "Missing argument 'prompt'"),
    ("vectors-missing-arg", ["vectors", "train", "{tiny}"], USAGE, "Missing option"),
    (
        "vectors-wrong-type",
        [
            "vectors",
            "train",
            "{tiny}",
            "--positive",
            "{pos}",
            "--negative",
            "{neg}",
            "--layer",
            "x",
            "--out",
            "v.safetensors",
        ],
        USAGE,
        "Invalid value for '--layer'",
    ),
    ("vectors-unknown-option", ["vectors", "train", "{tiny}", "--bogus"], USAGE, "No such option"),
    (
        "vectors-latin1",
        [
            "vectors",
            "train",
            "{tiny}",
            "--positive",
            "{pos}",
            "--negative",
            "{latin1}",
            "--layer",
            "1",
            "--out",
            "v.safetensors",
        ],
        SENTENCE,
        "is not UTF-8 text",
    ),
    # serve
    ("serve-missing-arg", ["serve"], USAGE, "Missing argument 'model'"),
    ("serve-wrong-type", ["serve", "{tiny}", "--port", "abc"], USAGE, "Invalid value for '--port'"),
    ("serve-port-range", ["serve", "{tiny}", "--port", "99999"], USAGE, "Invalid value for '--port'"),
    ("serve-unknown-option", ["serve", "{tiny}", "--bogus"], USAGE, "No such option"),
    (
        "serve-exposed-without-key",
        ["serve", "{tiny}", "--host", "0.0.0.0"],
        SENTENCE,
        "require a key with --api-key-env",
    ),
    ("serve-sae-not-named", ["serve", "{tiny}", "--sae", "/etc/passwd"], SENTENCE, "--sae takes NAME=PATH"),
    ("serve-sae-twice", ["serve", "{tiny}", "--sae", "a={sae}", "--sae", "a={sae}"], SENTENCE, "names 'a' twice"),
    ("serve-key-unset", ["serve", "{tiny}", "--api-key-env", "STEERLAB_SURELY_UNSET_VAR"], SENTENCE, "is not set"),
    ("serve-steer-file-latin1", ["serve", "{tiny}", "--steer-file", "{latin1}"], SENTENCE, "is not UTF-8 text"),
    (
        "serve-strength-nan",
        ["serve", "{tiny}", "--steer", "vector={vec},strength=nan"],
        SENTENCE,
        "is not a finite number",
    ),
    # judge
    ("judge-missing-arg", ["judge", "grade"], USAGE, "Missing option '--prompt'"),
    ("judge-wrong-type", ["judge", "run", "{run}", "--timeout", "abc"], USAGE, "Invalid value for '--timeout'"),
    ("judge-unknown-option", ["judge", "run", "{run}", "--bogus"], USAGE, "No such option"),
    (
        "judge-response-latin1",
        ["judge", "grade", "-p", "q", "--response-file", "{latin1}"],
        SENTENCE,
        "is not UTF-8 text",
    ),
    (
        "judge-unknown",
        ["judge", "grade", "-p", "q", "-r", "x", "--judge", "oracle"],
        SENTENCE,
        "Unknown judge 'oracle'",
    ),
    (
        "judge-key-over-http",
        [
            "judge",
            "grade",
            "-p",
            "q",
            "-r",
            "x",
            "--judge",
            "openai",
            "--judge-model",
            "m",
            "--judge-url",
            "http://judge.example.org/v1",
            "--judge-key-env",
            "STEERLAB_TEST_JUDGE_KEY",
        ],
        SENTENCE,
        "over plain HTTP",
    ),
    ("judge-run-corrupt-store", ["judge", "run", "{corrupt}"], SENTENCE, "is not a readable SQLite run store"),
    ("judge-run-no-store", ["judge", "run", "{inputs}/no-run"], SENTENCE, "No run store"),
    # store
    ("store-missing-arg", ["store", "show"], USAGE, "Missing argument 'run_dir'"),
    ("store-extra-arg", ["store", "show", "{run}", "surplus"], USAGE, "unexpected extra argument"),
    ("store-unknown-option", ["store", "export", "{run}", "--bogus"], USAGE, "No such option"),
    ("store-corrupt", ["store", "show", "{corrupt}"], SENTENCE, "is not a readable SQLite run store"),
    ("store-foreign", ["store", "show", "{foreign}"], SENTENCE, "SQLite file of another program"),
    ("store-newer", ["store", "show", "{newer}"], SENTENCE, "written by a newer steerlab"),
    ("store-export-format", ["store", "export", "{run}", "--format", "xml"], SENTENCE, "xml"),
    # sae
    ("sae-missing-arg", ["sae", "train"], USAGE, "Missing argument 'model'"),
    ("sae-wrong-type", ["sae", "train", "{tiny}", "--layer", "abc"], USAGE, "Invalid value for '--layer'"),
    ("sae-unknown-option", ["sae", "train", "{tiny}", "--layer", "1", "--bogus"], USAGE, "No such option"),
    (
        "sae-context-len-1",
        ["sae", "train", "{tiny}", "--layer", "1", "--context-len", "1"],
        SENTENCE,
        "'context_len' must lie in [2, inf)",
    ),
    ("sae-lr-nan", ["sae", "train", "{tiny}", "--layer", "1", "--lr", "nan"], SENTENCE, "'lr' must be a finite number"),
    (
        "sae-lr-negative",
        ["sae", "train", "{tiny}", "--layer", "1", "--lr", "-0.1"],
        SENTENCE,
        "'lr' must lie in (0, inf)",
    ),
    (
        "sae-reuse-inf",
        ["sae", "train", "{tiny}", "--layer", "1", "--reuse", "inf"],
        SENTENCE,
        "'reuse' must be a finite number",
    ),
    (
        "sae-l1-nan",
        ["sae", "train", "{tiny}", "--layer", "1", "--l1-coeff", "nan"],
        SENTENCE,
        "'l1_coeff' must be a finite number",
    ),
    ("sae-arch", ["sae", "train", "{tiny}", "--layer", "1", "--arch", "gated"], SENTENCE, "Unknown SAE architecture"),
    ("sae-layer-range", ["sae", "train", "{tiny}", "--layer", "9", "--tokens", "2048"], SENTENCE, "out of range"),
    (
        "sae-corpus-latin1",
        ["sae", "train", "{tiny}", "--layer", "1", "--tokens", "2048", "--corpus", "{latin1_jsonl}"],
        SENTENCE,
        "is not UTF-8 text",
    ),
    ("sae-info-missing", ["sae", "info", "{inputs}/no-sae"], SENTENCE, "no-sae"),
    # circuits
    ("circuits-missing-arg", ["circuits", "find"], USAGE, "Missing argument 'model'"),
    ("circuits-wrong-type", ["circuits", "find", "{tiny}", "--steps", "abc"], USAGE, "Invalid value for '--steps'"),
    ("circuits-unknown-option", ["circuits", "find", "{tiny}", "--bogus"], USAGE, "No such option"),
    (
        "circuits-organism-lr-nan",
        ["circuits", "organism", "backdoor", "{tiny}", "--out", "org", "--lr", "nan"],
        SENTENCE,
        "'lr' must be a finite number",
    ),
    (
        "circuits-organism-poison",
        ["circuits", "organism", "backdoor", "{tiny}", "--out", "org", "--poison", "1.5"],
        SENTENCE,
        "poison",
    ),
    ("circuits-ablate-missing", ["circuits", "ablate", "{tiny}", "{inputs}/none.json"], SENTENCE, "does not exist"),
    # esr
    ("esr-missing-arg", ["esr", "run"], USAGE, "Missing argument 'run_dir'"),
    ("esr-wrong-type", ["esr", "run", "r", "--n-latents", "abc"], USAGE, "Invalid value for '--n-latents'"),
    ("esr-unknown-option", ["esr", "run", "r", "--bogus"], USAGE, "No such option"),
    (
        "esr-temperature-nan",
        ["esr", "run", "r", "--temperature", "nan"],
        SENTENCE,
        "'temperature' must be a finite number",
    ),
    (
        "esr-repetition-inf",
        ["esr", "run", "r", "--repetition-penalty", "inf"],
        SENTENCE,
        "'repetition_penalty' must be a finite number",
    ),
    ("esr-target", ["esr", "run", "r", "--target", "100"], SENTENCE, "strictly between 0 and 100"),
    ("esr-calib-upper", ["esr", "run", "r", "--calib-upper", "-1"], SENTENCE, "'calib_upper' must lie in (0, inf)"),
    ("esr-min-auc", ["esr", "run", "r", "--detector-min-auc", "2"], SENTENCE, "'detector_min_auc' must lie in [0, 1]"),
    ("esr-seed", ["esr", "run", "r", "--seed", "-4"], SENTENCE, "'seed' must lie in [0, inf)"),
    ("esr-traces-corrupt", ["esr", "traces", "{corrupt}"], SENTENCE, "is not a readable SQLite run store"),
    # persona
    ("persona-missing-arg", ["persona", "diff", "{tiny}"], USAGE, "Missing argument 'tuned'"),
    (
        "persona-wrong-type",
        ["persona", "diff", "{tiny}", "{tiny}", "--sae", "{sae}", "--top", "abc"],
        USAGE,
        "Invalid value for '--top'",
    ),
    ("persona-unknown-option", ["persona", "diff", "--bogus"], USAGE, "No such option"),
    (
        "persona-prompts-latin1",
        ["persona", "diff", "{tiny}", "{tiny}", "--sae", "{sae}", "-p", "{latin1}"],
        SENTENCE,
        "is not UTF-8 text",
    ),
    (
        "persona-organism-lr-nan",
        ["persona", "organism", "{tiny}", "--lr", "nan"],
        SENTENCE,
        "'lr' must be a finite number",
    ),
    ("persona-organism-lr-zero", ["persona", "organism", "{tiny}", "--lr", "0"], SENTENCE, "'lr' must lie in (0, inf)"),
    (
        "persona-study-strength-inf",
        ["persona", "study", "{tiny}", "--strengths", "0.2,inf"],
        SENTENCE,
        "must be a finite number",
    ),
    ("persona-study-fraction-nan", ["persona", "study", "{tiny}", "--fractions", "0,nan"], SENTENCE, "nan"),
    # cache
    ("cache-missing-arg", ["cache", "prune", "--older-than"], USAGE, "requires an argument"),
    ("cache-wrong-type", ["cache", "prune", "--older-than", "soon"], USAGE, "Invalid value for '--older-than'"),
    ("cache-unknown-option", ["cache", "list", "--bogus"], USAGE, "No such option"),
    ("cache-negative-days", ["cache", "prune", "--older-than", "-3"], SENTENCE, "--older-than must lie in [0, inf)"),
    ("cache-nan-days", ["cache", "prune", "--older-than", "nan"], SENTENCE, "--older-than must be a finite number"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny model folder, an SAE and a vector that fit it, text files good and bad, run stores good and bad."""
    import torch

    from steerlab.paths import atomic_dir
    from steerlab.sae import Sae, SaeConfig, save_sae
    from steerlab.store import RunStore
    from steerlab.testing.tiny import tiny_model
    from steerlab.vectors.concept import ConceptVector

    root = tmp_path_factory.mktemp("inputs")
    model = tiny_model("llama")
    with atomic_dir(root / "tiny") as tmp:
        model.hf.save_pretrained(tmp, safe_serialization=True)
        model.tokenizer.save_pretrained(tmp)
    save_sae(Sae.random(SaeConfig(d_in=64, d_sae=32, layer=1), seed=1), root / "sae")
    ConceptVector(torch.ones(64), layer=1, site="resid_post", meta={}).save(root / "vec.safetensors")
    (root / "pos.txt").write_text("I love this.\nWhat a joy.\n")
    (root / "neg.txt").write_text("It is a table.\nThe sky is grey.\n")
    (root / "latin1.txt").write_bytes("Caf\xe9 au lait, na\xefve r\xe9sum\xe9\n".encode("latin-1"))
    (root / "latin1.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with RunStore(root / "run", {"kind": "catalogue"}):
        pass
    (root / "corrupt").mkdir()
    (root / "corrupt" / "run.sqlite").write_bytes(os.urandom(4096))
    (root / "foreign").mkdir()
    db = sqlite3.connect(root / "foreign" / "run.sqlite")
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    with RunStore(root / "newer", {"kind": "catalogue"}):
        pass
    db = sqlite3.connect(root / "newer" / "run.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    return root


def _snapshot(*folders: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                out[str(p)] = (p.stat().st_size, hashlib.sha1(p.read_bytes()).hexdigest())
            else:
                out[str(p)] = (-1, "dir")
    return out


def _fill(arg: str, root: Path) -> str:
    names = {
        "tiny": root / "tiny",
        "sae": root / "sae",
        "vec": root / "vec.safetensors",
        "pos": root / "pos.txt",
        "neg": root / "neg.txt",
        "latin1": root / "latin1.txt",
        "latin1_jsonl": root / "latin1.jsonl",
        "run": root / "run",
        "corrupt": root / "corrupt",
        "foreign": root / "foreign",
        "newer": root / "newer",
        "inputs": root,
    }
    return arg.format(**{k: str(v) for k, v in names.items()})


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, inputs, tmp_path, monkeypatch, capsys):
    name, argv, kind, needle = case
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STEERLAB_TEST_JUDGE_KEY", "sk-catalogue-secret-1")
    monkeypatch.setenv("COLUMNS", "200")
    before = _snapshot(inputs, work)
    with pytest.raises(SystemExit) as done:
        main([_fill(a, inputs) for a in argv])
    out, err = capsys.readouterr()
    assert done.value.code == 2, (out, err)
    assert "Traceback" not in out + err and "sk-catalogue-secret-1" not in out + err
    # progress bars (transformers' "Loading weights", ours) are not messages
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and not re.search(r"\d+%\|", ln)]
    if kind == USAGE:
        assert lines[0].startswith("Usage: steerlab"), err
        errors = [ln for ln in lines if ln.startswith("Error:")]
        assert len(errors) == 1 and needle in errors[0], err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
        assert lines[0].rstrip().endswith((".", ")", "'")), err  # a whole sentence
    assert _snapshot(inputs, work) == before  # nothing written, nothing lost
    if os.environ.get("STEERLAB_CATALOGUE_OUT"):  # the table in the closing note is made from this
        shown = next(ln for ln in lines if ln.startswith("Error:")) if kind == USAGE else lines[0]
        with open(os.environ["STEERLAB_CATALOGUE_OUT"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"case": name, "argv": argv, "message": shown}) + "\n")


def test_catalogue_covers_every_command_group():
    groups = {
        "generate": "core",
        "tokens": "core",
        "vectors": "core",
        "serve": "serve",
        "judge": "judge",
        "store": "store",
        "sae": "sae",
        "circuits": "circuits",
        "esr": "esr",
        "persona": "persona",
        "cache": "cache",
    }
    kinds: dict[str, set[str]] = {}
    for name, argv, kind, _ in CASES:
        kinds.setdefault(groups[argv[0]], set()).add(
            name.rsplit("-", 2)[-2] + "-" + name.rsplit("-", 1)[-1] if kind == USAGE else kind
        )
    assert len(CASES) >= 60
    for group, seen in kinds.items():
        usage = {k for k in seen if k in ("missing-arg", "wrong-type", "unknown-option", "extra-arg", "port-range")}
        assert {"missing-arg", "unknown-option"} <= usage, group
        assert "wrong-type" in usage or group == "store", (
            group
        )  # store takes no typed option: an extra argument stands in
        assert SENTENCE in seen, group


def test_markup_in_prompts_prints_and_out_is_written(inputs, tmp_path, monkeypatch, capsys):
    """A prompt holding rich markup ([/INST], [bold]) prints as text; --out is written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["generate", str(inputs / "tiny"), "-p", "[/INST] Hi [bold]there[/bold]", "-n", "4", "--out", "out.jsonl"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    assert (
        "[/INST] Hi [bold]there[/bold]" in out.replace("\n", "").replace("│", "").replace(" ", " ") or "[/INST]" in out
    )
    assert (tmp_path / "out.jsonl").read_text().count("\n") == 1


# --- kill -9 and resume ------------------------------------------------------------------------------------------------

WORKER = str(Path(__file__).with_name("kill_workers.py"))


def _env(tmp_path: Path) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "STEERLAB_CACHE": str(tmp_path / "cache"),
    }


def _kill_after(cmd: list[str], env: dict, lines: int) -> None:
    """Start a worker, SIGKILL it once it has printed `lines` lines of progress."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    for _ in proc.stdout:
        seen += 1
        if seen >= lines:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and seen >= lines


def _generations(run: Path) -> dict[str, str]:
    db = sqlite3.connect(run / "run.sqlite")
    try:
        return dict(db.execute("SELECT trial_key, token_ids FROM generations"))
    finally:
        db.close()


def test_kill_during_trial_generation_then_resume(tmp_path, monkeypatch):
    import kill_workers

    env, n = _env(tmp_path), 12
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    kill_workers.trials(str(tmp_path / "whole"), n, 0)  # the uninterrupted run, in this process
    _kill_after([sys.executable, WORKER, "trials", str(tmp_path / "killed"), str(n), "1.0"], env, 1)
    partial = _generations(tmp_path / "killed")
    assert 0 < len(partial) < n  # killed mid-run, with batches stored
    subprocess.run(
        [sys.executable, WORKER, "trials", str(tmp_path / "killed"), str(n), "0"],
        env=env,
        check=True,
        capture_output=True,
    )
    whole, resumed = _generations(tmp_path / "whole"), _generations(tmp_path / "killed")
    assert len(whole) == n and resumed == whole  # nothing lost or duplicated, every row the same tokens


def test_kill_during_sae_training_then_resume(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import kill_workers

    env = _env(tmp_path)
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    kill_workers.sae(str(tmp_path / "whole"), 0)  # the uninterrupted run, in this process
    _kill_after([sys.executable, WORKER, "sae", str(tmp_path / "killed"), "0.1"], env, 11)  # past the step-8 checkpoint
    assert (tmp_path / "killed" / "checkpoint.pt").is_file() and not (tmp_path / "killed" / "sae").exists()
    done = subprocess.run(
        [sys.executable, WORKER, "sae", str(tmp_path / "killed"), "0"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert done.stdout.split()[:2] == ["step", "8"]  # continued from the checkpoint, not from the start
    whole = load_file(tmp_path / "whole" / "sae" / "sae_weights.safetensors")
    resumed = load_file(tmp_path / "killed" / "sae" / "sae_weights.safetensors")
    assert set(whole) == set(resumed) and all(bool((whole[k] == resumed[k]).all()) for k in whole)  # bit for bit
