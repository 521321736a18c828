"""Keyed join: match orders with the users who placed them.

    python examples/keyed_join.py [--backend local|ray]   # or: sage-kernel run examples/keyed_join.py

Both inputs are keyed by user id, so every record of one user reaches the
same join instance, whichever input it comes from and in whatever order.
The join buffers both sides per key and emits each (user, order) pair once.
The pairs come back to this process with `collect()`, on local threads or on
Ray actors (`--backend`, or SAGE_KERNEL_BACKEND; local by default).
"""

import argparse
import os

from sage.kernel import LocalEnvironment, RayEnvironment
from sage.kernel.api.function import JoinFunction

USERS = [{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}, {"id": 3, "name": "edsger"}]
ORDERS = [
    {"user": 1, "item": "notebook"},
    {"user": 2, "item": "compiler"},
    {"user": 1, "item": "lamp"},
    {"user": 4, "item": "unclaimed parcel"},  # no such user: never matched
    {"user": 3, "item": "semaphore"},
    {"user": 2, "item": "moth"},
]


class UserOrders(JoinFunction):
    def __init__(self) -> None:
        self.names = {}   # user id -> name (input 0)
        self.items = {}   # user id -> items waiting for their user (input 1)

    def execute(self, payload, key, tag):
        if tag == 0:
            self.names[key] = payload["name"]
            return [(payload["name"], item) for item in self.items.pop(key, [])]
        if key in self.names:
            return [(self.names[key], payload["item"])]
        self.items.setdefault(key, []).append(payload["item"])
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "ray"], default=os.environ.get("SAGE_KERNEL_BACKEND", "local"))
    args = parser.parse_args()

    env = (RayEnvironment if args.backend == "ray" else LocalEnvironment)("keyed-join")
    users = env.from_batch(USERS).keyby(lambda user: user["id"])
    orders = env.from_batch(ORDERS).keyby(lambda order: order["user"])
    matches = users.connect(orders).join(UserOrders, parallelism=2).collect()
    env.submit(autostop=True)

    for name, item in sorted(matches):
        print(f"{name}\t{item}")


if __name__ == "__main__":
    main()
