"""What a target is: the plug-in interface behind :func:`mimoc.driver.compile`.

A target turns a verified IR graph into an artifact. It says which options it takes
(``options``: the keyword names of ``mimoc.compile`` that belong to it), validates them
into its own frozen configuration before any slow work (:meth:`Target.configure`),
adapts that configuration to the loaded model (:meth:`Target.plan`: a quantized
checkpoint's recipe, calibration), lists the passes to run, its own lowering included
(:meth:`Target.passes`), builds the artifact in memory (:meth:`Target.build`) and writes
it (:meth:`Target.write`). The driver knows nothing else about a target, so a new target
is a new package plus one line in :data:`mimoc.targets.TARGETS` (or
:func:`mimoc.targets.register` for one defined outside mimoc).

Example (a target that writes the IR's text form)::

    class TextTarget(Target):
        name = "ir-text"
        summary = "the optimized IR as text"

        def build(self, graph, config, *, context):
            return TextArtifact(format_graph(graph))

        def write(self, artifact, out, *, force):
            return write_directory({"graph.txt": artifact.text.encode()}, out, force=force)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimoc.errors import UsageError


@dataclass(frozen=True)
class BuildContext:
    """What the driver knows about the compile besides the graph.

    Attributes:
        model: ``{"name", "family", "config"}`` of the compiled model (for the manifest).
        source: ``{"file", "sha256"}`` of the model file, or ``None`` for an in-memory model.
        records: the pipeline's per-pass records (:class:`mimoc.compiler.pipeline.PassRecord`).
        progress: show progress bars on a terminal during long steps.
        snr_def: the SNR convention the model was trained under, when its checkpoint
            records it (``per-stream``, ``per-rx``, ``detnet``), else ``None``.
    """

    model: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] | None = None
    records: tuple = ()
    progress: bool = False
    snr_def: str | None = None


class Target:
    """Base class of the targets; subclasses set ``name``, ``summary``, ``options`` and
    implement :meth:`build` and :meth:`write` (the other methods have working defaults)."""

    #: the name users give to ``--target`` / ``target=``
    name: str = ""
    #: one line for ``--help`` and errors
    summary: str = ""
    #: keyword options of ``mimoc.compile`` that this target takes
    options: tuple[str, ...] = ()
    #: said when an option of another target is given to this one (default: how to switch)
    foreign_option_hint: str | None = None
    #: passes run before the target's own lowering when the user names none
    default_passes: tuple[str, ...] = ("canonicalize", "split-channel")
    #: the index file of the artifact directory and the ``format`` it declares (how
    #: :func:`mimoc.targets.artifact_target` and :func:`mimoc.runtime.load` recognise it)
    artifact_index: str = ""
    artifact_format: str = ""

    def configure(self, **options: Any) -> Any:
        """The target's configuration from ``options`` (already checked to be its own);
        raise :class:`UsageError` for bad values. Runs before the model is loaded."""
        return dict(options)

    def plan(self, config: Any, model: Any, recipe: Any, *, progress: bool = False) -> Any:
        """``config`` adapted to the loaded ``model`` (and the quantization ``recipe`` a
        quantized checkpoint carries, else ``None``)."""
        return config

    def passes(self, config: Any, requested: str | Iterable[str] | None) -> list:
        """The passes to run: ``requested`` (or :attr:`default_passes`), then the target's
        own lowering."""
        from mimoc.compiler.pipeline import resolve_passes

        return resolve_passes(self.default_passes if requested is None else requested)

    def build(self, graph: Any, config: Any, *, context: BuildContext) -> Any:
        """The artifact in memory; it has a ``manifest`` mapping."""
        raise NotImplementedError

    def write(self, artifact: Any, out: str | os.PathLike, *, force: bool) -> Path:
        """Write ``artifact`` as the directory ``out`` (atomically) and return its path."""
        raise NotImplementedError


def check_options(target: Target, options: Mapping[str, Any],
                  others: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """``options`` without the ``None`` values, refusing those ``target`` does not take.

    ``others`` maps the other targets' names to their options, so that the message can
    say which target an option belongs to (``--device is an option of the crossbar
    target; ...``).
    """
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key in target.options:
            continue
        owner = next((name for name, opts in others.items() if key in opts), None)
        flag = "--" + key.replace("_", "-")
        if owner is None:
            raise UsageError(f"unknown option {key!r} for target {target.name!r}; its "
                             f"options: {', '.join(target.options) or 'none'}")
        hint = target.foreign_option_hint or f"add --target {owner} or leave it out"
        raise UsageError(f"{flag} is an option of the {owner} target; {hint}")
    return given
