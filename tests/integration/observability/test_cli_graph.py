"""`sage-kernel graph`: Mermaid and DOT text, pictures through Graphviz, services; and every command's help."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sage.kernel.cli import main
from sage.kernel.runtime.job_manager import job_manager

from .support import console_script, write_script

# Two sources (one keyed), a parallel join-free union, a broadcast, a service and a pipeline service.
PIPELINE = """\
    import sys
    from sage.kernel import LocalEnvironment
    from sage.kernel.api.function import MapFunction
    from sage.kernel.api.service import BaseService


    class Prices(BaseService):
        def process(self, item):
            return len(str(item))


    class Price(MapFunction):
        def execute(self, item):
            return item, self.call_service("prices", item)


    def write(record):
        with open(sys.argv[1], "a") as f:
            f.write(f"{record}\\n")


    env = LocalEnvironment("shop")
    env.register_service("prices", Prices)
    env.from_service("totals").map(lambda x: x).reply()
    orders = env.from_batch(list(range(30))).keyby(lambda x: x % 3).map(Price, parallelism=2)
    orders.connect(env.from_batch(["a", "b"])).map(str, parallelism=2).sink(write)
    env.from_batch([1, 2]).keyby(lambda x: x, strategy="broadcast").sink(write, parallelism=2)
    env.submit(autostop=True)
    """

NODE = re.compile(r'^\s*(\w+) \[label="(?:[^"\\]|\\.)*"(?:, [\w]+=(?:"[^"]*"|\w+))*\];$')
EDGE = re.compile(r'^\s*(\w+) -> (\w+) \[(?:style=dashed, )?label="(?:[^"\\]|\\.)*"\];$')


def check_dot_structure(text: str) -> tuple[set[str], list[tuple[str, str]]]:
    """Validate DOT text line by line without Graphviz; return its node ids and edges.

    Every line is a comment, the digraph header, a graph/node/edge default,
    a cluster start/label/end, a node or an edge between declared nodes;
    braces balance.
    """
    nodes: set[str] = set()
    edges: list[tuple[str, str]] = []
    depth = 0
    lines = text.splitlines()
    assert lines[-1] == "}" and any(re.match(r'^digraph "[^"]+" \{$', line) for line in lines)
    for line in lines:
        if line.startswith("//") or re.match(r"^\s*(graph|node|edge) \[.*\];$", line):
            continue
        if re.match(r'^digraph "[^"]+" \{$', line) or re.match(r"^\s*subgraph cluster_\w+ \{$", line):
            depth += 1
        elif line.strip() == "}":
            depth -= 1
        elif re.match(r'^\s*label="(?:[^"\\]|\\.)*";$', line):
            assert depth == 2, line  # cluster labels only
        elif match := NODE.match(line):
            nodes.add(match.group(1))
        elif match := EDGE.match(line):
            edges.append((match.group(1), match.group(2)))
        else:
            raise AssertionError(f"not a DOT statement this exporter writes: {line!r}")
        assert depth >= 0
    assert depth == 0
    unknown = {n for edge in edges for n in edge} - nodes
    assert not unknown, f"edges to undeclared nodes {unknown}"
    return nodes, edges


def test_mermaid_on_stdout_without_running_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "records.txt"
    before = job_manager().running_jobs()
    assert main(["graph", str(write_script(tmp_path, PIPELINE)), str(out)]) == 0
    text = capsys.readouterr().out
    assert not out.exists() and job_manager().running_jobs() == before  # compiled, never started
    lines = text.splitlines()
    assert lines[0] == "%% sage-kernel execution graph: shop"
    assert "%% who calls a service is known only from a run: sage-kernel run --graph PATH SCRIPT" in lines
    assert "flowchart LR" in lines
    ids = dict(re.findall(r'^    (op\d+)\S*"(\w+)<br/>', text, re.M))
    expect_nodes = {"service_totals", "map", "reply", "from_batch", "keyby", "Price", "from_batch2", "str", "write",
                    "from_batch3", "keyby2", "write2"}
    assert set(ids.values()) == expect_nodes
    by_name = {name: op for op, name in ids.items()}
    assert f'    {by_name["Price"]}["Price<br/>map ×2"]' in lines
    assert f'    {by_name["write"]}[["write<br/>sink ×1"]]' in lines
    assert f'    {by_name["from_batch"]}(["from_batch<br/>batch ×1<br/>30 records"])' in lines

    def edge(a: str, label: str, b: str) -> str:
        return f"    {by_name[a]} -->|{label}| {by_name[b]}"

    assert edge("keyby", "hash", "Price") in lines
    assert edge("Price", "hash, input 0", "str") in lines
    assert edge("from_batch2", "round_robin, input 1", "str") in lines
    assert edge("str", "mixed", "write") in lines
    assert edge("keyby2", "broadcast", "write2") in lines
    assert '    svc0{{"service prices<br/>max_concurrency 1"}}' in lines
    assert f"    svc1 -.->|serves| {by_name['service_totals']}" in lines


def test_dot_and_mermaid_files_expanded(tmp_path: Path) -> None:
    dot_path, mmd_path = tmp_path / "shop.dot", tmp_path / "shop.mmd"
    assert main(["graph", "--expand", "-o", str(dot_path), "-o", str(mmd_path),
                 str(write_script(tmp_path, PIPELINE)), str(tmp_path / "records.txt")]) == 0
    text = dot_path.read_text()
    nodes, edges = check_dot_structure(text)
    ids = {label: node for node, label in re.findall(r'^\s*(\w+) \[label="([^"]+)"', text, re.M)}
    assert len(nodes) == 15 + 2  # every instance (3 operators have 2), and the two services
    # Every instance of an upstream operator reaches every instance of the next one.
    assert {(ids["keyby_0"], ids["Price_0"]), (ids["keyby_0"], ids["Price_1"])} <= set(edges)
    assert {(ids[f"Price_{i}"], ids[f"str_{j}"]) for i in (0, 1) for j in (0, 1)} <= set(edges)
    assert {(ids["str_0"], ids["write_0"]), (ids["str_1"], ids["write_0"])} <= set(edges)
    assert 'label="Price\\nmap ×2";' in text  # the operator's box around its instances
    mermaid = mmd_path.read_text()
    assert re.search(r'^    subgraph op\d+ \["Price · map ×2"\]$', mermaid, re.M)
    assert mermaid.count("-->|hash|") == 2


@pytest.mark.skipif(shutil.which("dot") is None,
                    reason="Graphviz's dot is not installed (apt-get install graphviz): DOT is checked structurally "
                           "only, and pictures cannot be drawn")
def test_graphviz_parses_the_dot_and_draws_png_and_svg(tmp_path: Path) -> None:
    script = write_script(tmp_path, PIPELINE)
    for expand in ([], ["--expand"]):
        dot_path = tmp_path / "shop.dot"
        assert main(["graph", *expand, "-o", str(dot_path), str(script), str(tmp_path / "r.txt")]) == 0
        parsed = subprocess.run(["dot", "-Tcanon", str(dot_path)], capture_output=True, text=True, timeout=60,
                                check=False)
        assert parsed.returncode == 0 and not parsed.stderr, parsed.stderr
    png, svg = tmp_path / "shop.png", tmp_path / "shop.svg"
    assert main(["graph", "-o", str(png), "-o", str(svg), str(script), str(tmp_path / "r.txt")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text() and "Price" in svg.read_text()


def test_a_picture_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    no_dot = tmp_path / "bin"
    no_dot.mkdir()
    result = subprocess.run([console_script(), "graph", "-o", str(tmp_path / "g.png"), "-o", str(tmp_path / "g.dot"),
                             str(write_script(tmp_path, PIPELINE)), str(tmp_path / "r.txt")],
                            capture_output=True, text=True, timeout=60, env={"PATH": str(no_dot)}, check=False)
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "apt-get install graphviz" in result.stderr
    check_dot_structure((tmp_path / "g.dot").read_text())  # the text output is still written


def test_run_draws_the_service_calls_it_saw(tmp_path: Path) -> None:
    graph_path = tmp_path / "seen.mmd"
    records = tmp_path / "records.txt"
    assert main(["run", "--view", "quiet", "--graph", str(graph_path), str(write_script(tmp_path, PIPELINE)),
                 str(records)]) == 0
    assert len(records.read_text().splitlines()) == 30 + 2 + 2 * 2  # orders, letters, broadcast records x2
    text = graph_path.read_text()
    assert "who calls a service" not in text
    price = re.search(r'^    (op\d+)\["Price<br/>', text, re.M).group(1)
    assert f"    {price} -.->|calls: 30| svc0" in text


def test_graph_reports_the_scripts_own_error_or_a_missing_submit(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    failing = write_script(tmp_path, """\
        from sage.kernel import LocalEnvironment
        env = LocalEnvironment("broken")
        env.from_batch([1]).map(42)
        """)
    assert main(["graph", str(failing)]) == 1
    err = capsys.readouterr().err
    assert f'File "{failing}", line 3, in <module>' in err
    assert "PipelineError: map operator: expected a MapFunction subclass or a callable, got 42" in err
    assert main(["graph", str(write_script(tmp_path, "print('no pipeline here')\n"))]) == 1
    captured = capsys.readouterr()
    assert "submitted no job" in captured.err
    assert main(["graph", "-o", "graph.jpeg", str(failing)]) == 2
    assert main(["graph", str(tmp_path / "missing.py")]) == 2


@pytest.mark.parametrize(("command", "expected"), [
    ([], ["demo", "run", "graph", "COMMAND --help"]),
    (["run"], ["--view", "--interval", "--expand", "--graph", "--full-traceback", "Ctrl-C", "bottleneck",
               "busy", "backpressured", "idle", "ETA", "Exit status", "stderr", "Options go before SCRIPT"]),
    (["graph"], ["-o PATH", "--format", "--expand", ".mmd", ".dot", ".png", ".svg", "apt-get install graphviz",
                 "brew install graphviz", "known only from a run", "strategy"]),
    (["demo"], ["--top", "--parallelism", "--text"]),
])
def test_help_is_complete(command: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines where it likes
    for phrase in expected:
        assert phrase in text, phrase
