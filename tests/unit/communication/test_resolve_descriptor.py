"""resolve_descriptor / from_dict: rebuilding descriptors by queue_type, and clear errors for bad input."""

from __future__ import annotations

import sys
import textwrap

import pytest

from sage.kernel.runtime.communication import PythonQueueDescriptor, resolve_descriptor
from sage.kernel.runtime.communication.queue_descriptor import base_queue_descriptor, register_descriptor_type


def test_resolve_rebuilds_a_python_descriptor():
    data = {"queue_type": "python", "queue_id": "resolve-me", "maxsize": 3, "metadata": {"a": 1}}
    descriptor = resolve_descriptor(data)
    assert type(descriptor) is PythonQueueDescriptor
    assert descriptor.to_dict() == data


def test_optional_fields_take_their_defaults():
    descriptor = resolve_descriptor({"queue_type": "python", "queue_id": "minimal"})
    assert (descriptor.maxsize, descriptor.metadata) == (0, {})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"queue_id": "q"}, "missing 'queue_type'"),
        ({"queue_type": "python"}, "missing 'queue_id'"),
        ({}, "missing 'queue_type', 'queue_id'"),
        ({"queue_type": "carrier_pigeon", "queue_id": "q"},
         "unknown queue_type 'carrier_pigeon'; known types: .*python"),
        ({"queue_type": ["python"], "queue_id": "q"}, "queue_type must be a string, got list"),
        ({"queue_type": "python", "queue_id": "q", "colour": "red"}, "does not fit PythonQueueDescriptor.*'colour'"),
        ({"queue_type": "python", "queue_id": "q", "maxsize": "10"}, "maxsize must be an int"),
        ({"queue_type": "python", "queue_id": "q", "maxsize": -5}, "maxsize must be an int >= 0"),
        ({"queue_type": "python", "queue_id": 42}, "queue_id must be a non-empty string, got 42"),
        ({"queue_type": "python", "queue_id": "q", "metadata": "x"}, "metadata must be a dict, got str"),
    ],
)
def test_malformed_dicts_raise_value_error_naming_the_problem(data, message):
    with pytest.raises(ValueError, match=message):
        resolve_descriptor(data)


@pytest.mark.parametrize("data", [None, "python", ["queue_type", "python"], PythonQueueDescriptor(queue_id="obj")])
def test_a_non_dict_raises_type_error(data):
    with pytest.raises(TypeError, match=f"needs a dict, got {type(data).__name__}"):
        resolve_descriptor(data)


def test_from_dict_rejects_non_dicts_and_other_types():
    with pytest.raises(TypeError, match="must be a dict, got tuple"):
        PythonQueueDescriptor.from_dict(("python", "q"))
    with pytest.raises(ValueError, match="queue_type 'rpc_queue', PythonQueueDescriptor needs 'python'"):
        PythonQueueDescriptor.from_dict({"queue_type": "rpc_queue", "queue_id": "q"})
    with pytest.raises(ValueError, match="no 'queue_id'"):
        PythonQueueDescriptor.from_dict({"queue_type": "python"})


@pytest.fixture
def lazy_registries(monkeypatch):
    """Undo any registration a test makes (type and lazy-module tables are process-wide)."""
    monkeypatch.setattr(base_queue_descriptor, "_LAZY_TYPES", dict(base_queue_descriptor._LAZY_TYPES))
    monkeypatch.setattr(base_queue_descriptor, "_DESCRIPTOR_TYPES", dict(base_queue_descriptor._DESCRIPTOR_TYPES))


def test_a_lazily_registered_type_is_imported_on_first_resolve(lazy_registries, tmp_path, monkeypatch):
    module = "sage_test_lazy_transport"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        import queue
        from sage.kernel.runtime.communication import BaseQueueDescriptor

        class LazyDescriptor(BaseQueueDescriptor):
            queue_type = "lazy_test"

            def _create_queue_instance(self):
                return queue.Queue(self.maxsize)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    register_descriptor_type("lazy_test", module)
    assert module not in sys.modules  # registering imports nothing
    descriptor = resolve_descriptor({"queue_type": "lazy_test", "queue_id": "q", "maxsize": 2})
    assert module in sys.modules
    assert type(descriptor).__name__ == "LazyDescriptor" and descriptor.maxsize == 2
    monkeypatch.delitem(sys.modules, module)


def test_a_lazy_module_that_does_not_define_its_type_is_an_unknown_type(lazy_registries):
    register_descriptor_type("phantom", "json")
    with pytest.raises(ValueError, match=r"unknown queue_type 'phantom'; known types: .*phantom"):
        resolve_descriptor({"queue_type": "phantom", "queue_id": "q"})
