"""A worker process for the store tests: claims trials, 'generates', writes, logs what it wrote."""

import sys
import time

from steerlab.store import RunStore, Trial

CONFIG = {"experiment": "store-test", "model": "none", "n": None}


def trials(n: int) -> list[Trial]:
    return [
        Trial("steered", f"prompt {i % 10}", seed=i // 10, latent=i % 7, strength=2.5, label=f"label {i % 7}")
        for i in range(n)
    ]


def main(run_dir: str, n: int, delay: float, worker: str, log: str, mode: str) -> None:
    store = RunStore(run_dir, {**CONFIG, "n": n})
    store.add_trials(trials(n))
    with open(log, "a") as out:
        if mode == "all":  # every worker writes every trial: first write wins, replays are no-ops
            for t in store.trials():
                if store.put_generation(t.key, f"gen for {t.key}", [1, 2, 3], "length"):
                    out.write(t.key + "\n")
                    out.flush()
            return
        while True:
            batch = store.claim(worker, 4)
            if not batch:
                break
            for t in batch:
                time.sleep(delay)  # the "generation"
                if store.put_generation(t.key, f"gen for {t.key}", [1, 2, 3], "length"):
                    out.write(t.key + "\n")
                    out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
