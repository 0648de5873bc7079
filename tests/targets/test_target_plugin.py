"""A third target added without touching the driver: the Target interface is the whole
contract between ``mimoc.compile`` and a back end."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import mimoc
from mimoc.compiler.printer import format_graph
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError
from mimoc.targets import TARGETS, get_target, register, unregister
from mimoc.targets.base import BuildContext, Target
from mimoc.targets.output import write_directory


@dataclass(frozen=True)
class TextArtifact:
    text: str
    manifest: dict


class TextTarget(Target):
    """Writes the optimized IR's text form: the smallest useful target."""

    name = "ir-text"
    summary = "the optimized IR as text"
    options = ("title",)
    default_passes = ("canonicalize",)

    def configure(self, *, title: str = "graph") -> str:
        if not isinstance(title, str) or not title:
            raise UsageError(f"title must be a non-empty string, got {title!r}")
        return title

    def build(self, graph, config, *, context: BuildContext) -> TextArtifact:
        return TextArtifact(f"# {config}\n{format_graph(graph)}",
                            {"format": "ir-text", "model": dict(context.model),
                             "passes": [r.name for r in context.records]})

    def write(self, artifact, out, *, force):
        return write_directory({"graph.txt": artifact.text.encode()}, out, force=force)


@pytest.fixture
def text_target():
    target = TextTarget()
    register(target)
    yield target
    unregister(target.name)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=8,
                           v_dim=4)
    path = tmp_path_factory.mktemp("model") / "detnet.pt"
    save_detector(model, path)
    return path


def test_a_registered_target_compiles_through_the_driver(text_target, checkpoint, tmp_path):
    result = mimoc.compile(checkpoint, target="ir-text", out=tmp_path / "out", title="mine")
    assert result.target == "ir-text"
    assert result.manifest["passes"] == ["canonicalize"]
    assert result.manifest["model"]["family"] == "detnet"
    text = (tmp_path / "out" / "graph.txt").read_text()
    assert text.startswith("# mine\ngraph ") and "Linear" in text


def test_a_plugin_target_refuses_other_targets_options(text_target, checkpoint):
    with pytest.raises(UsageError, match="--quant is an option of the onnx target"):
        mimoc.compile(checkpoint, target="ir-text", quant="minmax")
    with pytest.raises(UsageError, match="unknown option 'colour' for target 'ir-text'"):
        mimoc.compile(checkpoint, target="ir-text", colour="red")
    with pytest.raises(UsageError, match="title must be a non-empty string"):
        mimoc.compile(checkpoint, target="ir-text", title="")


def test_unknown_and_removed_targets(checkpoint):
    assert "ir-text" not in TARGETS
    with pytest.raises(UsageError, match="unknown target 'ir-text'; targets: onnx, crossbar"):
        get_target("ir-text")
    with pytest.raises(UsageError, match="built in"):
        unregister("onnx")


def test_built_in_targets_refuse_each_others_options(checkpoint):
    with pytest.raises(UsageError, match="--quant is an option of the onnx target; the "
                                         "crossbar target maps fp32 weights"):
        mimoc.compile(checkpoint, target="crossbar", quant="minmax")
    with pytest.raises(UsageError, match="--device is an option of the crossbar target; add "
                                         "--target crossbar"):
        mimoc.compile(checkpoint, target="onnx", device="ftj-luo2022")


def test_progress_reaches_both_targets(checkpoint, monkeypatch):
    seen = []
    for name in ("onnx", "crossbar"):
        target = get_target(name)
        real = type(target).build

        def spy(self, graph, config, *, context, real=real):
            seen.append((self.name, context.progress))
            return real(self, graph, config, context=context)

        monkeypatch.setattr(type(target), "build", spy)
        mimoc.compile(checkpoint, target=name, progress=True)
    assert seen == [("onnx", True), ("crossbar", True)]
