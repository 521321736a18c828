"""The RPC queue next to raw pyzmq, in one run: single puts, batches, round trips.

    python benchmarks/bench_rpc_queue.py [--items N] [--batch B] [--rounds R]

Every row moves items between processes on 127.0.0.1 (spawned, one
producer, one consumer); rates are items per second measured by the
consumer, from the common start until it has every item. Items are small
dicts, `{"id": i, "text": "the quick brown fox"}`.

1. Single puts: `RPCQueueDescriptor.put(item)` once per item in a producer
   process; the consumer process hosts the queue (the pipeline layout) and
   reads it with `get_many(1024)`; the producer flushes at the end. Against
   raw PUSH/PULL with one pickled dict per message.
2. Batches of B: `put_many` and `get_many(B)`, with the consumer hosting the
   queue, and with both ends remote (server in this process). Against raw
   PUSH/PULL with one pickled list of B dicts per message.
3. Round trip p50 over R rounds: `put(item)` then `get()` of one item on a
   queue served by another process, against a raw REQ/REP echo of one
   pickled dict.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import secrets
import statistics
import time

import zmq

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor
from sage.kernel.runtime.communication.rpc import AUTHKEY_ENV, RPCQueueServer

MAXSIZE = 10_000


def make_item(i: int) -> dict:
    return {"id": i, "text": "the quick brown fox"}


def race(start, result, *processes) -> float:
    """Start the processes not started yet, release them together; return the consumer's elapsed time."""
    for process in processes:
        if process.pid is None:
            process.start()
    start.set()
    elapsed = result.get(timeout=600)
    for process in processes:
        process.join()
    return elapsed


# ---------------------------------------------------------------------- rpc
def rpc_produce(descriptor: RPCQueueDescriptor, n: int, batch: int, start) -> None:
    start.wait()
    if batch == 1:
        put = descriptor.put
        for i in range(n):
            put(make_item(i))
    else:
        for first in range(0, n, batch):
            descriptor.put_many([make_item(i) for i in range(first, min(n, first + batch))])
    descriptor.flush()


def rpc_consume(descriptor: RPCQueueDescriptor, n: int, batch: int, start, result) -> None:
    got = 0
    start.wait()
    began = time.perf_counter()
    while got < n:
        got += len(descriptor.get_many(batch))
    result.put(time.perf_counter() - began)


def rpc_host_and_consume(n: int, batch: int, address, start, result) -> None:
    with RPCQueueServer() as server:
        descriptor = server.create_queue("bench", maxsize=MAXSIZE)
        address.put(server.port)
        rpc_consume(descriptor, n, batch, start, result)


def bench_rpc_consumer_hosts(ctx, n: int, put_batch: int, get_batch: int) -> float:
    address, start, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=rpc_host_and_consume, args=(n, get_batch, address, start, result))
    consumer.start()
    descriptor = RPCQueueDescriptor("127.0.0.1", address.get(timeout=30), "bench", MAXSIZE)
    producer = ctx.Process(target=rpc_produce, args=(descriptor, n, put_batch, start))
    return n / race(start, result, consumer, producer)


def bench_rpc_both_remote(ctx, n: int, batch: int) -> float:
    with RPCQueueServer() as server:
        # Used only by the child processes, where no server runs: both ends go over TCP.
        descriptor = server.create_queue("bench", maxsize=MAXSIZE)
        start, result = ctx.Event(), ctx.Queue()
        consumer = ctx.Process(target=rpc_consume, args=(descriptor, n, batch, start, result))
        producer = ctx.Process(target=rpc_produce, args=(descriptor, n, batch, start))
        return n / race(start, result, consumer, producer)


# ---------------------------------------------------------------------- raw zmq
def raw_push(port: int, n: int, batch: int, start) -> None:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.connect(f"tcp://127.0.0.1:{port}")
    start.wait()
    if batch == 1:
        for i in range(n):
            sock.send(pickle.dumps(make_item(i), protocol=pickle.HIGHEST_PROTOCOL))
    else:
        for first in range(0, n, batch):
            items = [make_item(i) for i in range(first, min(n, first + batch))]
            sock.send(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
    sock.close(linger=-1)


def raw_pull(n: int, batch: int, address, start, result) -> None:
    sock = zmq.Context.instance().socket(zmq.PULL)
    address.put(sock.bind_to_random_port("tcp://127.0.0.1"))
    got = 0
    start.wait()
    began = time.perf_counter()
    while got < n:
        message = pickle.loads(sock.recv())
        got += 1 if batch == 1 else len(message)
    result.put(time.perf_counter() - began)
    sock.close()


def bench_raw(ctx, n: int, batch: int) -> float:
    address, start, result = ctx.Queue(), ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=raw_pull, args=(n, batch, address, start, result))
    consumer.start()
    producer = ctx.Process(target=raw_push, args=(address.get(timeout=30), n, batch, start))
    return n / race(start, result, consumer, producer)


# ---------------------------------------------------------------------- round trips
def raw_echo(address, rounds: int) -> None:
    sock = zmq.Context.instance().socket(zmq.REP)
    address.put(sock.bind_to_random_port("tcp://127.0.0.1"))
    for _ in range(rounds):
        sock.send(pickle.dumps(pickle.loads(sock.recv())))
    sock.close()


def bench_raw_reqrep_p50(ctx, rounds: int) -> float:
    address = ctx.Queue()
    server = ctx.Process(target=raw_echo, args=(address, rounds))
    server.start()
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.connect(f"tcp://127.0.0.1:{address.get(timeout=30)}")
    samples = []
    for i in range(rounds):
        began = time.perf_counter()
        sock.send(pickle.dumps(make_item(i)))
        pickle.loads(sock.recv())
        samples.append(time.perf_counter() - began)
    sock.close()
    server.join()
    return statistics.median(samples[rounds // 10 :])


def rpc_host(address, stop) -> None:
    with RPCQueueServer() as server:
        server.create_queue("rtt", maxsize=16)
        address.put(server.port)
        stop.wait()


def bench_rpc_roundtrip_p50(ctx, rounds: int) -> float:
    address, stop = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=rpc_host, args=(address, stop))
    server.start()
    descriptor = RPCQueueDescriptor("127.0.0.1", address.get(timeout=30), "rtt", 16)
    samples = []
    for i in range(rounds):
        began = time.perf_counter()
        descriptor.put(make_item(i))
        descriptor.get()
        samples.append(time.perf_counter() - began)
    descriptor.close()
    stop.set()
    server.join()
    return statistics.median(samples[rounds // 10 :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3_000)
    args = parser.parse_args()
    # Servers and clients, here and in the spawned children, read the key from here;
    # descriptors never carry it.
    os.environ[AUTHKEY_ENV] = secrets.token_hex(32)
    ctx = mp.get_context("spawn")
    n, batch = args.items, args.batch
    print(f"{n} items (small dicts), one producer process, one consumer process, "
          f"queue maxsize {MAXSIZE}, load average {os.getloadavg()[0]:.1f}")

    raw_single = bench_raw(ctx, n, 1)
    rpc_single = bench_rpc_consumer_hosts(ctx, n, 1, 1024)
    print("1. single put() per item")
    print(f"  raw PUSH/PULL, one pickled dict per message : {raw_single:>10,.0f} items/s")
    print(f"  rpc put(), consumer hosts the queue         : {rpc_single:>10,.0f} items/s"
          f"  ratio {rpc_single / raw_single:.2f}x raw")

    raw_batched = bench_raw(ctx, n, batch)
    hosted = bench_rpc_consumer_hosts(ctx, n, batch, batch)
    remote = bench_rpc_both_remote(ctx, n, batch)
    print(f"2. batches of {batch}")
    print(f"  raw PUSH/PULL, one pickled batch per message: {raw_batched:>10,.0f} items/s")
    print(f"  rpc put_many, consumer hosts the queue      : {hosted:>10,.0f} items/s"
          f"  ratio {hosted / raw_batched:.2f}x raw batched")
    print(f"  rpc put_many/get_many, both ends remote     : {remote:>10,.0f} items/s"
          f"  ratio {remote / raw_batched:.2f}x raw batched")

    raw_rtt = bench_raw_reqrep_p50(ctx, args.rounds)
    rpc_rtt = bench_rpc_roundtrip_p50(ctx, args.rounds)
    print(f"3. round trip p50 over {args.rounds} rounds")
    print(f"  raw REQ/REP echo of one dict                : {raw_rtt * 1e6:>8.0f} us")
    print(f"  rpc put() + get() of one dict               : {rpc_rtt * 1e6:>8.0f} us"
          f"  ratio {rpc_rtt / raw_rtt:.2f}x raw")


if __name__ == "__main__":
    main()
