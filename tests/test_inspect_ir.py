"""``mimoc inspect --ir / --passes / --dump-after``: the compiler IR through the CLI."""

from __future__ import annotations

import pytest
import torch
from json_docs import parse_output

from mimoc import cli
from mimoc.detectors import build_detector, save_detector


@pytest.fixture(scope="module")
def wesnet_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("wesnet", nt=2, nr=4, layers=3, hidden=8, v_dim=4, retained=0.5)
    return save_detector(model, tmp_path_factory.mktemp("models") / "wesnet.pt")


def inspect(capsys, *argv):
    code = cli.main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_ir_as_imported(capsys, wesnet_file):
    code, out, err = inspect(capsys, wesnet_file, "--ir")
    assert code == 0 and err == ""
    assert "passes: none (as imported)" in out
    assert "graph wesnet(%H: f32[B,8,4] @slot, %y: f32[B,S,8] @symbol) -> (%x_hat)" in out
    assert "W=blocks.0.fc1.weight[8x16]" in out and out.rstrip().endswith("return %x_hat")


def test_ir_after_passes_reports_what_they_removed(capsys, wesnet_file):
    code, out, _ = inspect(capsys, wesnet_file, "--passes", "canonicalize,prune,remove-layers",
                           "--keep-layers", "2")
    assert code == 0
    assert "#   prune: blocks.0.fc1: removed 4 of 8 hidden units (|beta| <= 0)" in out
    assert "#   remove-layers: kept blocks.0 .. blocks.1, removed blocks.2 .. blocks.2" in out
    assert "W=blocks.0.fc1.weight.pruned[4x16]" in out and "blocks.2" not in out.split(
        "graph wesnet")[1]


def test_dump_after_prints_each_requested_graph(capsys, wesnet_file):
    code, out, _ = inspect(capsys, wesnet_file, "--passes", "canonicalize,split-channel",
                           "--dump-after", "frontend,split-channel")
    assert code == 0
    assert out.count("graph wesnet(") == 2
    assert "# IR after frontend" in out and "# IR after split-channel" in out
    after = out.split("# IR after split-channel")[1]
    assert "Gram(%H)" in after and "Gram(%H)" not in out.split("# IR after split-channel")[0]


def test_json_form(capsys, wesnet_file):
    code, out, _ = inspect(capsys, wesnet_file, "--passes", "canonicalize,prune", "--json",
                           "--dump-after", "canonicalize")
    assert code == 0
    data = parse_output("inspect", out)
    assert data["kind"] == "ir"
    info = data["ir"]
    assert [p["pass"] for p in info["passes"]] == ["canonicalize",
                                                                            "prune"]
    graph = info["graph"]
    assert graph["inputs"][0] == {"name": "H", "shape": ["B", 8, 4], "dtype": "f32",
                                  "rate": "slot"}
    linears = [n for n in graph["nodes"] if n["op"] == "Linear"]
    assert linears[0]["scope"] == "blocks.0.fc1" and linears[0]["shape"] == ["B", "S", 4]
    assert linears[0]["flops"] == 2 * 4 * 16 and linears[0]["rate"] == "symbol"
    assert graph["flops"]["per_symbol"] == sum(n["flops"] for n in graph["nodes"]
                                               if n["rate"] == "symbol")
    assert info["passes"][1]["details"]["flops_saved_per_symbol"] > 0
    assert set(info["dumps"]) == {"canonicalize"}


@pytest.mark.parametrize("argv, message", [
    (["--passes", "canonicalize,prun"], "unknown pass 'prun'; available passes: canonicalize"),
    (["--ir", "--dump-after", "prune"], "--dump-after prune: not in the pipeline"),
    (["--passes", "canonicalize", "--keep-layers", "2"], "--keep-layers 2 is an option of the "
                                                          "remove-layers pass"),
    (["--keep-layers", "2"], "use them with --passes"),
    (["--passes", "remove-layers"], "remove-layers needs a target"),
])
def test_bad_arguments_are_one_line_errors(capsys, wesnet_file, argv, message):
    code, out, err = inspect(capsys, wesnet_file, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err
