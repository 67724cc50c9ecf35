"""Run `steerlab serve` logic in a child process on 127.0.0.1 (tiny model, or a real one by name)."""

import sys

from steerlab.serve import serve_forever, start_server


def main(model_name: str, port: int) -> None:
    if model_name == "tiny":
        from steerlab.testing.tiny import tiny_model

        model = tiny_model("llama")
    else:
        import steerlab

        model = steerlab.load(model_name)
    server = start_server(model, "127.0.0.1", port, max_batch=4)
    print(f"ready {server.url}", flush=True)
    serve_forever(server)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
