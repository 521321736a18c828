"""RPCQueueDescriptor: serialization without the key, resolution, identity, key rules, local attach."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from sage.kernel.runtime.communication.queue_descriptor import RPCQueueDescriptor, resolve_descriptor
from sage.kernel.runtime.communication.rpc import AUTHKEY_ENV, AuthKeyError, RPCQueueServer

from .support import over_tcp

SECRET = "an-explicit-secret-key-0123456789"


def test_import_sage_kernel_loads_no_zmq_and_resolves_rpc_descriptors():
    code = (
        "import sys, sage.kernel\n"
        "from sage.kernel.runtime.communication.queue_descriptor import resolve_descriptor, RPCQueueDescriptor\n"
        "d = resolve_descriptor({'queue_type': 'rpc_queue', 'queue_id': 'q', 'host': 'h', 'port': 1})\n"
        "assert type(d) is RPCQueueDescriptor, d\n"
        "assert 'zmq' not in sys.modules, 'zmq imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_to_dict_to_json_and_pickle_never_carry_the_key():
    descriptor = RPCQueueDescriptor("127.0.0.1", 5555, "q", 7, authkey=SECRET, timeout=3.0)
    data = descriptor.to_dict()
    assert data == {
        "queue_type": "rpc_queue",
        "queue_id": "q",
        "maxsize": 7,
        "metadata": {},
        "host": "127.0.0.1",
        "port": 5555,
        "timeout": 3.0,
    }
    assert SECRET not in descriptor.to_json()
    assert SECRET.encode() not in pickle.dumps(descriptor)
    assert pickle.loads(pickle.dumps(descriptor))._authkey is None


def test_resolve_descriptor_round_trip_reaches_the_same_queue(server):
    descriptor = server.create_queue("round-trip", 10)
    rebuilt = resolve_descriptor(json.loads(descriptor.to_json()))
    assert type(rebuilt) is RPCQueueDescriptor and rebuilt == descriptor
    rebuilt.put("x")
    assert descriptor.get(timeout=5) == "x"
    remote = resolve_descriptor(over_tcp(descriptor).to_dict())  # key from SAGE_KERNEL_AUTHKEY
    remote.put("y")
    assert descriptor.get(timeout=5) == "y"
    remote.close()


def test_identity_is_the_address_and_queue_not_the_timeout():
    a = RPCQueueDescriptor("h", 1, "q", 5, timeout=1)
    assert a == RPCQueueDescriptor("h", 1, "q", 5, timeout=9)
    assert hash(a) == hash(RPCQueueDescriptor("h", 1, "q", 5, timeout=9))
    assert a != RPCQueueDescriptor("h", 2, "q", 5)
    assert a != RPCQueueDescriptor("other", 1, "q", 5)
    assert a.clone().queue_id != "q" and a.clone().port == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"host": ""}, {"port": 0}, {"port": 70000}, {"port": True}, {"timeout": 0}, {"maxsize": -1}],
)
def test_bad_configuration_is_refused(kwargs):
    config = {"host": "h", "port": 1, "queue_id": "q", **kwargs}
    with pytest.raises(ValueError, match="must be"):
        RPCQueueDescriptor(**config)


def test_no_key_anywhere_refuses_to_start_or_connect(monkeypatch):
    monkeypatch.delenv(AUTHKEY_ENV, raising=False)
    with pytest.raises(AuthKeyError, match=AUTHKEY_ENV):
        RPCQueueServer()
    with pytest.raises(AuthKeyError, match=AUTHKEY_ENV):
        RPCQueueDescriptor("127.0.0.1", 5555, "q").put(1)
    with pytest.raises(AuthKeyError, match="at least"):
        RPCQueueServer(authkey="short")


def test_local_descriptor_attaches_without_a_network_hop(server):
    descriptor = server.create_queue("local", 100)
    by_dict = resolve_descriptor(descriptor.to_dict())
    assert descriptor.is_local and by_dict.is_local
    descriptor.put_many(list(range(10)))
    by_dict.put("last")
    assert by_dict.qsize() == 11 and not by_dict.empty()
    assert descriptor.get_many(100) == [*range(10), "last"]
    assert server.counters["messages"] == 0 and server.counters["requests"] == 0


def test_local_attach_works_with_the_io_thread_stopped(authkey):
    server = RPCQueueServer(authkey=authkey).start()
    descriptor = server.create_queue("local", 10)
    descriptor.put(1)
    server._stopping.set()  # stop the I/O thread only; the queue object stays attached
    server._wake()
    server._thread.join(5)
    assert not server._thread.is_alive()
    descriptor.put(2)
    assert descriptor.get_many(10, timeout=1) == [1, 2]
    server.stop()


def test_server_refuses_a_port_in_use(server):
    with pytest.raises(OSError, match="cannot bind"):
        RPCQueueServer(port=server.port).start()
