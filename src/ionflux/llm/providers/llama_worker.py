"""Local text generation's worker process: llama-cpp-python on its own, apart from the server.

Why a process of its own: usearch's compiled module (the embedded vector memory) carries its own static C++
runtime, whose locale objects are process-wide; once it is loaded, llama.cpp cannot read a model's
vocabulary (`error loading model vocabulary: std::bad_cast`; measured here: `import usearch` then
`Llama(...)` fails, with or without llama_cpp imported first; torch, qdrant-client and the rest do not
matter). This module imports nothing but llama_cpp, so the two never meet.

    python -m ionflux.llm.providers.llama_worker MODEL.gguf

Protocol, one JSON object a line: the worker first writes {"ready": true} or {"error": "..."} (the model
did not load), then answers each request line — keyword arguments of `create_chat_completion` — with
{"result": {...}} or {"error": "..."}. Anything llama.cpp itself prints goes to stderr, never into the
protocol. The worker ends when its stdin closes.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # from here on, fd 1 (where C code prints) is stderr

    def say(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")

    try:
        llama_cpp = importlib.import_module("llama_cpp")  # an optional extra: no stubs to check against
        llama = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=2048, verbose=False)
    except Exception as exc:  # reported to the server, which answers PROVIDER_UNAVAILABLE with it
        say({"error": f"{type(exc).__name__}: {exc}"})
        return
    say({"ready": True})
    for line in sys.stdin:
        try:
            say({"result": llama.create_chat_completion(**json.loads(line))})
        except Exception as exc:
            say({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
