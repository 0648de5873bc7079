"""ONNX model -> MLIR (IREE's ONNX importer, in process) -> ``.vmfb`` (``iree-compile``).

Both steps are IREE's Python API (:mod:`iree.compiler`): the importer builds the
``torch`` dialect module from the ``ModelProto`` in memory, :func:`iree.compiler.tools.
compile_str` lowers it for the local CPU (``llvm-cpu``) with :data:`BASE_FLAGS`:
data tiling (weights packed to the GEMM micro-kernels' tile layout at compile time) and
IREE's micro-kernels for every op that has one. A failure of either is a one-line
:class:`~mimoc.targets.onnx.EmitError` naming the stage.

Example::

    >>> vmfb = compile_model(onnx_model, ["--iree-llvmcpu-target-cpu=host"])
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from mimoc.targets.onnx.context import EmitError

BASE_FLAGS = ("--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
              "--iree-opt-data-tiling", "--iree-llvmcpu-enable-ukernels=all")


def compiler_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"iree-base-compiler {version('iree-base-compiler')}"
    except PackageNotFoundError:
        return "iree-base-compiler (version unknown)"


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if "error:" in line] or \
        [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
    line = lines[0]
    return line if len(line) <= 240 else line[:237] + "..."


def import_onnx(model: onnx.ModelProto, stage: str) -> str:
    """The MLIR text of ``model`` (IREE's ONNX importer, shapes inferred first)."""
    try:
        from iree.compiler.extras import onnx_importer
        from iree.compiler.ir import Context
    except ImportError:
        raise EmitError("the iree target needs IREE's compiler: pip install "
                        "'mimoc[iree]' (iree-base-compiler, iree-base-runtime)") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        info = onnx_importer.ModelInfo(inferred)
        module = info.create_module(context=Context()).operation
        onnx_importer.NodeImporter.define_function(info.main_graph, module).import_all()
        module.verify()
        return module.get_asm(assume_verified=True)
    except Exception as err:  # noqa: BLE001 - the importer raises many kinds; one line each
        raise EmitError(f"IREE's ONNX importer cannot take the {stage} model "
                        f"({_first_line(err)}); compile it with --target onnx") from None


def compile_mlir(mlir: str, flags: Sequence[str], stage: str) -> bytes:
    """The ``.vmfb`` of ``mlir`` compiled with :data:`BASE_FLAGS` and ``flags``."""
    from iree.compiler import tools

    try:
        return tools.compile_str(mlir, input_type="onnx",
                                 extra_args=[*BASE_FLAGS, *flags])
    except tools.CompilerToolError as err:
        raise EmitError(f"iree-compile failed on the {stage} model ({_first_line(err)}); "
                        "compile it with --target onnx") from None


def compile_model(model: onnx.ModelProto, flags: Sequence[str], stage: str = "detector"
                  ) -> bytes:
    return compile_mlir(import_onnx(model, stage), flags, stage)
