"""Drawing a `Topology`: Mermaid text, Graphviz DOT text, and pictures through Graphviz's `dot`.

Operators are boxes (sources rounded, sinks doubled) labelled with their
kind and parallelism; with `expand` every parallel instance is its own node
inside a box per operator. Edges carry the routing strategy (and the input
number on operators with several inputs); a feedback edge, which closes a
loop (`fill_future`), is drawn bold and labelled "feedback". Services are hexagons; a dashed
edge goes from each caller seen at run time to the service, labelled with
its calls, and from a pipeline service to the `from_service` source that
serves it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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
    return ("feedback, " if edge.feedback else "") + edge.strategy + (
        f", input {edge.input_index}" if edge.target_inputs > 1 else "")


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


def _expanded_edges(topology: Topology) -> list[tuple[str, str, Edge]]:
    """Instance-to-instance edges: every upstream instance reaches every downstream instance."""
    ops = {op.id: op for op in topology.operators}
    return [(_instance_id(ops[e.source], i), _instance_id(ops[e.target], j), e)
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


# ---------------------------------------------------------------------- the two syntaxes
_STYLES = {"source": 'shape=box, style="rounded,filled", fillcolor="#e3f2fd"',
           "batch": 'shape=box, style="rounded,filled", fillcolor="#e3f2fd"',
           "sink": "shape=box, peripheries=2",
           "service": 'shape=hexagon, style=filled, fillcolor="#fff3e0"'}
"""Graphviz attributes per node kind (other operators are plain boxes)."""


class _Mermaid:
    """Statements of a Mermaid flowchart."""

    @staticmethod
    def text(text: str) -> str:
        return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

    def header(self, name: str, notes: list[str]) -> list[str]:
        return [f"%% sage-kernel execution graph: {name}"] + [f"%% {note}" for note in notes] + ["flowchart LR"]

    def footer(self) -> list[str]:
        return []

    def cluster(self, cluster_id: str, label: list[str], body: list[str]) -> list[str]:
        return [f'    subgraph {cluster_id} ["{self.text(" · ".join(label))}"]', *body, "    end"]

    def node(self, node_id: str, label: list[str], kind: str) -> str:
        text = '"' + "<br/>".join(self.text(line) for line in label) + '"'
        shape = {"source": f"([{text}])", "batch": f"([{text}])", "sink": f"[[{text}]]",
                 "service": f"{{{{{text}}}}}"}.get(kind, f"[{text}]")
        return f"{node_id}{shape}"

    def edge(self, source: str, target: str, label: str, dashed: bool = False, bold: bool = False) -> str:
        arrow = "-.->" if dashed else "==>" if bold else "-->"
        return f"{source} {arrow}|{self.text(label)}| {target}"


class _Dot:
    """Statements of a Graphviz digraph."""

    @staticmethod
    def text(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    def header(self, name: str, notes: list[str]) -> list[str]:
        return [f"// sage-kernel execution graph: {name}", *(f"// {note}" for note in notes),
                f"digraph {self.text(name)} {{", '    graph [rankdir=LR, fontname="Helvetica"];',
                '    node [fontname="Helvetica"];', '    edge [fontname="Helvetica", fontsize=10];']

    def footer(self) -> list[str]:
        return ["}"]

    def cluster(self, cluster_id: str, label: list[str], body: list[str]) -> list[str]:
        return [f"    subgraph cluster_{cluster_id} {{", f"        label={self.text(chr(10).join(label))};", *body,
                "    }"]

    def node(self, node_id: str, label: list[str], kind: str) -> str:
        return f"{node_id} [label={self.text(chr(10).join(label))}, {_STYLES.get(kind, 'shape=box')}];"

    def edge(self, source: str, target: str, label: str, dashed: bool = False, bold: bool = False) -> str:
        # A feedback edge points back: constraint=false keeps the picture flowing left to right.
        style = "style=dashed, " if dashed else 'style=bold, color="#c62828", constraint=false, ' if bold else ""
        return f"{source} -> {target} [{style}label={self.text(label)}];"


def _draw(topology: Topology, expand: bool, syntax: _Mermaid | _Dot) -> str:
    lines = syntax.header(topology.name, _notes(topology))
    for op in topology.operators:
        if expand:
            lines += syntax.cluster(op.id, _operator_label(op), [
                f"        {syntax.node(_instance_id(op, i), [name], op.kind)}" for i, name in enumerate(op.instances)])
        else:
            lines.append(f"    {syntax.node(op.id, _operator_label(op), op.kind)}")
    lines += [f"    {syntax.node(s.id, _service_label(s), 'service')}" for s in topology.services]
    edges = _expanded_edges(topology) if expand else [(e.source, e.target, e) for e in topology.edges]
    lines += [f"    {syntax.edge(a, b, _edge_label(e), bold=e.feedback)}" for a, b, e in edges]
    lines += [f"    {syntax.edge(a, b, 'serves', dashed=True)}" for a, b in _served_by(topology, expand)]
    lines += [f"    {syntax.edge(a, b, f'calls: {calls:,}', dashed=True)}"
              for a, b, calls in _caller_edges(topology, expand)]
    return "\n".join(lines + syntax.footer()) + "\n"


def _served_by(topology: Topology, expand: bool) -> list[tuple[str, str]]:
    """(service node id, node id of the source instance or operator serving it) of pipeline services."""
    ops = {op.id: op for op in topology.operators}
    found = []
    for service in topology.services:
        if service.served_by is not None:
            op = ops[service.served_by]
            targets = [_instance_id(op, i) for i in range(len(op.instances))] if expand else [op.id]
            found += [(service.id, target) for target in targets]
    return found


def to_mermaid(topology: Topology, expand: bool = False) -> str:
    """A Mermaid flowchart (left to right) of `topology`; `expand` draws every parallel instance."""
    return _draw(topology, expand, _Mermaid())


def to_dot(topology: Topology, expand: bool = False) -> str:
    """A Graphviz digraph (left to right) of `topology`; `expand` draws every parallel instance."""
    return _draw(topology, expand, _Dot())


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
                            text=True, timeout=RENDER_TIMEOUT, check=False)
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
