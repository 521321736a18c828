"""Drawing a `Topology`: Mermaid text, Graphviz DOT text, and pictures through Graphviz's `dot`.

Operators are boxes (sources rounded, sinks doubled) labelled with their
kind and parallelism; with `expand` every parallel instance is its own node
inside a box per operator. Edges carry the routing strategy (and the input
number on operators with several inputs). Services are hexagons; a dashed
edge goes from each caller seen at run time to the service, labelled with
its calls, and from a pipeline service to the `from_service` source that
serves it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable

from .topology import Edge, OperatorNode, ServiceNode, Topology

INSTALL_GRAPHVIZ = ("Graphviz's `dot` program is needed for pictures; install it with "
                    "`apt-get install graphviz` (Debian, Ubuntu), `dnf install graphviz` (Fedora) or "
                    "`brew install graphviz` (macOS), or write .dot/.mmd text instead")

PICTURE_FORMATS = ("png", "svg")
TEXT_FORMATS = {"mmd": "mermaid", "mermaid": "mermaid", "dot": "dot", "gv": "dot"}

RENDER_TIMEOUT = 60.0
"""Seconds `dot` may take to draw a picture."""

_UNKNOWN_CALLERS = "who calls a service is known only from a run: sage-kernel run --graph PATH SCRIPT"


class GraphvizMissing(RuntimeError):
    """Graphviz's `dot` is not installed; the message says how to install it."""


def _operator_label(op: OperatorNode) -> list[str]:
    """The lines of an operator's label."""
    parts = [op.name, f"{op.kind} ×{len(op.instances)}"]
    if op.bounded_size is not None:
        parts.append(f"{op.bounded_size:,} records")
    return parts


def _service_label(service: ServiceNode) -> list[str]:
    detail = "pipeline service" if service.pipeline else f"max_concurrency {service.max_concurrency}"
    return [f"service {service.name}", detail]


def _edge_label(edge: Edge) -> str:
    return edge.strategy + (f", input {edge.input_index}" if edge.target_inputs > 1 else "")


def _instance_id(op: OperatorNode, index: int) -> str:
    return f"{op.id}_{index}"


def _caller_edges(topology: Topology, expand: bool) -> list[tuple[str, str, int]]:
    """(from node id, service node id, calls), callers folded into their operator unless `expand`."""
    service_ids = {s.name: s.id for s in topology.services}
    found: dict[tuple[str, str], int] = {}
    for service in topology.services:
        for caller, calls in service.callers.items():
            op = topology.operator_of(caller)
            if op is not None:
                source = _instance_id(op, op.instances.index(caller)) if expand else op.id
            elif caller.removeprefix("service:") in service_ids:
                source = service_ids[caller.removeprefix("service:")]
            else:
                continue
            found[(source, service.id)] = found.get((source, service.id), 0) + calls
    return [(source, target, calls) for (source, target), calls in found.items()]


def _expanded_edges(topology: Topology) -> list[tuple[str, str, str]]:
    """Instance-to-instance edges: every upstream instance reaches every downstream instance."""
    ops = {op.id: op for op in topology.operators}
    return [(_instance_id(ops[e.source], i), _instance_id(ops[e.target], j), _edge_label(e))
            for e in topology.edges
            for i in range(len(ops[e.source].instances))
            for j in range(len(ops[e.target].instances))]


def _notes(topology: Topology) -> list[str]:
    notes = []
    if not topology.callers_known and any(not s.pipeline for s in topology.services):
        notes.append(_UNKNOWN_CALLERS)
    if any(s.pipeline for s in topology.services):
        notes.append("calls to a pipeline service (from_service) are not counted per caller")
    return notes


# ---------------------------------------------------------------------- Mermaid
def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid_node(node_id: str, lines: list[str], kind: str) -> str:
    label = '"' + "<br/>".join(_mermaid_text(line) for line in lines) + '"'
    shape = {"source": f"([{label}])", "batch": f"([{label}])", "sink": f"[[{label}]]",
             "service": f"{{{{{label}}}}}"}.get(kind, f"[{label}]")
    return f"{node_id}{shape}"


def to_mermaid(topology: Topology, expand: bool = False) -> str:
    """A Mermaid flowchart (left to right) of `topology`; `expand` draws every parallel instance."""
    lines = [f"%% sage-kernel execution graph: {topology.name}"]
    lines += [f"%% {note}" for note in _notes(topology)]
    lines.append("flowchart LR")
    for op in topology.operators:
        if expand:
            lines.append(f'    subgraph {op.id} ["{_mermaid_text(" · ".join(_operator_label(op)))}"]')
            lines += [f"        {_mermaid_node(_instance_id(op, i), [name], op.kind)}"
                      for i, name in enumerate(op.instances)]
            lines.append("    end")
        else:
            lines.append(f"    {_mermaid_node(op.id, _operator_label(op), op.kind)}")
    for service in topology.services:
        lines.append(f"    {_mermaid_node(service.id, _service_label(service), 'service')}")
    if expand:
        lines += [f"    {a} -->|{_mermaid_text(label)}| {b}" for a, b, label in _expanded_edges(topology)]
    else:
        lines += [f"    {e.source} -->|{_mermaid_text(_edge_label(e))}| {e.target}" for e in topology.edges]
    lines += _served_by_lines(topology, expand, lambda a, b: f"    {a} -.->|serves| {b}")
    lines += [f"    {a} -.->|calls: {calls:,}| {b}" for a, b, calls in _caller_edges(topology, expand)]
    return "\n".join(lines) + "\n"


def _served_by_lines(topology: Topology, expand: bool, line: Callable[[str, str], str]) -> list[str]:
    ops = {op.id: op for op in topology.operators}
    found = []
    for service in topology.services:
        if service.served_by is not None:
            op = ops[service.served_by]
            targets = [_instance_id(op, i) for i in range(len(op.instances))] if expand else [op.id]
            found += [line(service.id, target) for target in targets]
    return found


# ---------------------------------------------------------------------- DOT
def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_node(node_id: str, label: str, kind: str) -> str:
    style = {"source": 'shape=box, style="rounded,filled", fillcolor="#e3f2fd"',
             "batch": 'shape=box, style="rounded,filled", fillcolor="#e3f2fd"',
             "sink": 'shape=box, peripheries=2',
             "service": 'shape=hexagon, style=filled, fillcolor="#fff3e0"'}.get(kind, "shape=box")
    return f"{node_id} [label={_dot_string(label)}, {style}];"


def to_dot(topology: Topology, expand: bool = False) -> str:
    """A Graphviz digraph (left to right) of `topology`; `expand` draws every parallel instance."""
    lines = [f"// sage-kernel execution graph: {topology.name}"]
    lines += [f"// {note}" for note in _notes(topology)]
    lines += [f"digraph {_dot_string(topology.name)} {{",
              '    graph [rankdir=LR, fontname="Helvetica"];',
              '    node [fontname="Helvetica"];',
              '    edge [fontname="Helvetica", fontsize=10];']
    for op in topology.operators:
        if expand:
            lines.append(f"    subgraph cluster_{op.id} {{")
            lines.append(f"        label={_dot_string(chr(10).join(_operator_label(op)))};")
            lines += [f"        {_dot_node(_instance_id(op, i), name, op.kind)}" for i, name in enumerate(op.instances)]
            lines.append("    }")
        else:
            lines.append(f"    {_dot_node(op.id, chr(10).join(_operator_label(op)), op.kind)}")
    for service in topology.services:
        lines.append(f"    {_dot_node(service.id, chr(10).join(_service_label(service)), 'service')}")
    if expand:
        lines += [f"    {a} -> {b} [label={_dot_string(label)}];" for a, b, label in _expanded_edges(topology)]
    else:
        lines += [f"    {e.source} -> {e.target} [label={_dot_string(_edge_label(e))}];" for e in topology.edges]
    lines += _served_by_lines(topology, expand, lambda a, b: f'    {a} -> {b} [style=dashed, label="serves"];')
    lines += [f'    {a} -> {b} [style=dashed, label="calls: {calls:,}"];' for a, b, calls in
              _caller_edges(topology, expand)]
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- files
def output_format(path: str) -> str:
    """"mermaid", "dot", "png" or "svg" from a file name's suffix; `ValueError` for another suffix."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix in TEXT_FORMATS:
        return TEXT_FORMATS[suffix]
    if suffix in PICTURE_FORMATS:
        return suffix
    raise ValueError(f"cannot tell the format of {path!r}: use .mmd (Mermaid), .dot, .png or .svg")


def render(dot_text: str, path: str, picture_format: str) -> None:
    """Draw `dot_text` into `path` as a PNG or SVG with Graphviz's `dot`.

    Raises `GraphvizMissing` when `dot` is not installed, `RuntimeError` with
    dot's message when it fails, `subprocess.TimeoutExpired` after
    `RENDER_TIMEOUT` seconds.
    """
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing(INSTALL_GRAPHVIZ)
    result = subprocess.run([dot, f"-T{picture_format}", "-o", path], input=dot_text, capture_output=True,
                            text=True, timeout=RENDER_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed to draw {path}: {result.stderr.strip()}")


def write(topology: Topology, path: str, expand: bool = False) -> None:
    """Write `topology` to `path` in the format its suffix names (see `output_format`, `render`)."""
    fmt = output_format(path)
    if fmt in PICTURE_FORMATS:
        render(to_dot(topology, expand), path, fmt)
        return
    text = to_mermaid(topology, expand) if fmt == "mermaid" else to_dot(topology, expand)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
