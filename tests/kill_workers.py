"""Child processes for the kill -9 tests: ESR trial generation and SAE training on tiny models, resumable.

python kill_workers.py trials RUN_DIR N DELAY   -- generate every pending trial, one batch at a time
python kill_workers.py sae OUT_DIR DELAY        -- train a small SAE with a checkpoint every 4 steps
Each prints one line per unit of work done (flushed), so the parent knows when to kill.
"""

import sys
import time

PROMPTS = [
    "How do you boil an egg?",
    "How do you fry an egg?",
    "Explain how to iron a shirt.",
    "Explain how to wash a car.",
]


def trial_list(n: int):
    from steerlab.store import Trial

    return [
        Trial(
            "steered" if i % 3 else "baseline",
            PROMPTS[i % 4],
            seed=i,
            latent=i % 40 if i % 3 else None,
            strength=4.0 * (i % 5) if i % 3 else None,
        )
        for i in range(n)
    ]


def trials(run_dir: str, n: int, delay: float) -> None:
    from steerlab.esr.config import EsrConfig
    from steerlab.esr.runner import generate_pending
    from steerlab.esr.setup import Resources
    from steerlab.sae import Sae, SaeConfig
    from steerlab.store import RunStore
    from steerlab.testing.tiny import tiny_model

    model = tiny_model("llama")
    sae = Sae.random(SaeConfig(d_in=model.arch.d_model, d_sae=48, layer=1), seed=5)
    cfg = EsrConfig(max_new_tokens=8, batch_size=4, temperature=0.7)
    res = Resources(model, sae, {}, None, None, PROMPTS, PROMPTS)
    store = RunStore(run_dir, {"test": "kill-trials", "n": n, "cfg": cfg.to_dict()})
    store.add_trials(trial_list(n))
    while store.pending():
        written = generate_pending(store, res, cfg, max_batches=1)
        print(f"batch {written}", flush=True)
        time.sleep(delay)


def sae(out_dir: str, delay: float) -> None:
    from steerlab.data.corpus import Corpus
    from steerlab.sae.train import TrainConfig, train_sae
    from steerlab.testing.tiny import tiny_model

    model = tiny_model("llama")
    corpus = Corpus(
        "tiny", [f"Document number {i} is about topic {i % 7}, and {'so on ' * (i % 5)}it ends." for i in range(120)]
    )
    cfg = TrainConfig(
        layer=1,
        arch="topk",
        d_sae=96,
        k=6,
        n_tokens=64 * 24,
        batch_size=64,
        buffer_tokens=512,
        warmup_steps=3,
        log_every=1,
        checkpoint_every=4,
        lr=2e-3,
        context_len=32,
        seed=3,
    )

    def on_log(logs):
        print(f"step {logs['step']}", flush=True)
        time.sleep(delay)

    train_sae(model, corpus, cfg, out_dir, progress=False, on_log=on_log)
    print("done", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "trials":
        trials(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sae(sys.argv[2], float(sys.argv[3]))
