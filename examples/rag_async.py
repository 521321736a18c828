"""Retrieval-augmented answers from a model server: batched embeddings, async retrieval, streamed tokens.

    python examples/rag_async.py [--backend local|ray]

The script starts its own fake model server on 127.0.0.1 (the standard
library's HTTP server, on a free port): `POST /embed` embeds a list of texts
in one call (as a GPU would, 10 ms a batch), `GET /generate` streams an
answer one token per line. Then a pipeline answers questions:

- `Embedder` is a service whose `process` is `@batch`ed: every instance of
  the pipeline calls it with one text, and the texts of concurrent calls go
  to the model server together;
- `Retrieve` (`map_async`) embeds the notes once when it opens (an async
  `open()`), then for each question awaits its embedding from the service
  and picks the closest note, many questions in flight at once;
- `Answer` (`flatmap_async`) streams the model's answer token by token,
  each token emitted as it arrives;
- the driver joins each question's tokens (they come in order per question)
  and prints the answers, then how many calls there were; how the model
  calls were batched and how long they took go to stderr (they vary from
  run to run).

`--backend ray` (or SAGE_KERNEL_BACKEND=ray) runs the service and the
functions as Ray actors on this machine (the model server stays in this
process, on 127.0.0.1); the output is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import AsyncFlatMapFunction, AsyncMapFunction
from sage.kernel.api.service import BaseService, batch

NOTES = [
    "The river carries stone and sand down to the mill in spring.",
    "The lighthouse lamp is lit at dusk and turned off at dawn.",
    "Bread is baked in the village oven every morning before market.",
    "The ferry crosses the harbor twice a day when the wind allows.",
]
QUESTIONS = [
    "When is the lighthouse lamp lit?",
    "What does the river carry to the mill?",
    "When is bread baked in the village?",
    "How often does the ferry cross the harbor?",
]
DIMENSIONS = 64


# ---------------------------------------------------------------------- the fake model server
def embed(text: str) -> list[float]:
    """A bag-of-words vector: one hashed dimension per word, normalised."""
    vector = [0.0] * DIMENSIONS
    for word in text.lower().replace("?", "").replace(".", "").split():
        if len(word) > 3:  # short words say little
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class ModelHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # /embed: a batch of texts in, their vectors out
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        time.sleep(0.01)  # one pass of the model over the whole batch
        body = json.dumps({"vectors": [embed(text) for text in texts]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /generate?context=...: the answer, one token per line as it is generated
        context = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["context"][0]
        self.send_response(200)
        self.end_headers()
        for token in f"From my notes: {context}".split():
            time.sleep(0.005)
            self.wfile.write(f"{token}\n".encode())
            self.wfile.flush()


def start_model_server() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ModelHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------- the pipeline
class Embedder(BaseService):
    """The embedding model: concurrent calls are grouped into one request to the server."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/embed"

    @batch(max_batch_size=16, max_wait=0.005)
    def process(self, texts: list[str]) -> list[list[float]]:
        request = urllib.request.Request(self.url, data=json.dumps({"texts": texts}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            vectors: list[list[float]] = json.load(response)["vectors"]
            return vectors


class Retrieve(AsyncMapFunction):
    """A question -> (question, the closest note)."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes

    async def open(self) -> None:
        vectors = await asyncio.gather(*(self.call_service_async("embedder", note) for note in self.notes))
        self.index = list(zip(self.notes, vectors, strict=True))

    async def execute(self, question: str) -> tuple[str, str]:
        vector = await self.call_service_async("embedder", question)
        note, _ = max(self.index, key=lambda item: sum(a * b for a, b in zip(item[1], vector, strict=True)))
        return question, note


class Answer(AsyncFlatMapFunction):
    """(question, note) -> (question, token), ... as the model generates them."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def execute(self, item: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
        question, note = item
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        query = urllib.parse.urlencode({"context": note})
        writer.write(f"GET /generate?{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        try:
            while (await reader.readline()) not in (b"\r\n", b""):  # status line and headers
                pass
            while token := (await reader.readline()).decode().strip():
                yield question, token
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    server = start_model_server()
    port = server.server_address[1]
    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("rag-async")
    env.register_service("embedder", Embedder, port)
    tokens = (env.from_batch(QUESTIONS)
              .map_async(Retrieve, NOTES, capacity=16, timeout=10.0, retries=2)
              .flatmap_async(Answer, port, capacity=16, timeout=10.0)
              .collect())
    job = env.submit(autostop=True)
    server.shutdown()

    answers: dict[str, list[str]] = {}
    for question, token in tokens:
        answers.setdefault(question, []).append(token)
    for question in QUESTIONS:
        print(f"Q: {question}\nA: {' '.join(answers[question])}")
    metrics = job.metrics()
    batches = metrics["service:embedder"]["batches"]["process"]
    retrieve = metrics["Retrieve_0"]["async"]
    print(f"embedder: {batches['requests']} texts; retrieval: {retrieve['completed']} calls")
    print(f"measured: {batches['batches']} model calls for {batches['requests']} texts; "
          f"retrieval p50 {retrieve['latency_p50'] * 1000:.1f} ms", file=sys.stderr)


if __name__ == "__main__":
    main()
