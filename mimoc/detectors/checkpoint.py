"""The mimoc detector checkpoint: a plain dict that loads without unpickling code.

File format (``torch.save`` of a dict; ``torch.load(..., weights_only=True)``
reads it, so loading a file can never run code)::

    {
        "format": "mimoc-detector",
        "format_version": 1,
        "family": "detnet",                  # a key of mimoc.detectors.FAMILIES
        "config": {"nt": 8, "nr": 16, ...},   # asdict(model.config)
        "state_dict": {name: tensor, ...},    # CPU tensors
        "training": {"steps": ..., "snr_db": [lo, hi], "seed": ..., "val_ser": ...,
                     "seconds": ..., "options": {...}, ...},   # {} when untrained
        "mimoc_version": "0.1.0",
        "quantization": {...},                # optional: a quantized checkpoint's recipe
    }                                         # (mimoc.quant.spec; load_quantized reads it)

:func:`load_detector` checks everything before building the module: the path
is a regular file (not a FIFO or device, which would block or never end), an
intact torch zip archive (the CRC-32 of every entry, which ``torch.load`` does
not check), it holds only plain data (a pickled ``nn.Module`` is
refused, never unpickled), the format tag and version, the family, the
config's keys and types (against the family's ``Config`` annotations) and its
own ``validate()``, the state_dict's keys, shapes and dtypes against a module
built from the config (on the ``meta`` device first, so a config that claims
huge sizes allocates nothing; integer sizes far beyond the number of stored
weights are refused before building), finite weights, and the types of the
training metadata that later readers use. Every refusal is a
:class:`~mimoc.errors.ModelFileError` with one line that says what the file is
and what to do.

Example::

    >>> save_detector(model, "detnet.pt", training=report)
    >>> model = load_detector("detnet.pt")        # eval mode, bit-exact outputs
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mimoc.detectors.base import DetectorConfig, DetectorModule
from mimoc.errors import MimocError, ModelFileError, UsageError
from mimoc.fileio import (
    atomic_write,
    check_model_file,
    check_zip_integrity,
    is_export_archive,
)

FORMAT = "mimoc-detector"
FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"
_HOW_TO_SAVE = ("save it with mimoc.detectors.save_detector(model, path) or train it with "
                "'mimoc train'")


# ----------------------------------------------------------------------------- config types

def config_from_dict(config_cls: type[DetectorConfig], values: Mapping[str, Any]) -> DetectorConfig:
    """Build ``config_cls`` from plain values, checking names and annotated types.

    ``float`` fields accept ints, ``tuple[...]`` fields accept lists (JSON and
    some writers turn tuples into lists); missing fields take their defaults
    (so a field added to a family later keeps old files loadable). Raises
    :class:`UsageError` naming the first bad field.
    """
    if not isinstance(values, Mapping):
        raise UsageError(f"a config must be a mapping of field names, got {type(values).__name__}")
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        raise UsageError(f"unknown {config_cls.__name__} field(s): {', '.join(unknown)}")
    checked = {name: coerce_field(values[name], hints.get(name, Any), name) for name in values}
    try:
        config = config_cls(**checked)
        config.validate()
    except MimocError:
        raise
    except (TypeError, ValueError) as err:  # e.g. a required field without a default is missing
        raise UsageError(f"invalid {config_cls.__name__}: {err}") from None
    return config


def coerce_field(value: Any, annotation: Any, name: str) -> Any:
    """``value`` checked against a dataclass field annotation (int, float, str, bool,
    None, unions, ``Literal``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``);
    other annotations are accepted unchecked."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if annotation is type(None) or annotation is None:
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return coerce_field(value, option, name)
            except UsageError:
                continue
    elif origin is typing.Literal:
        if value in args:
            return value
    elif origin in (tuple, list):
        if isinstance(value, (tuple, list)):
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                items = [coerce_field(v, args[0], name) for v in value]
            elif origin is tuple and args:
                if len(value) != len(args):
                    raise UsageError(f"field {name!r} needs {len(args)} values, got {len(value)}")
                items = [coerce_field(v, a, name) for v, a in zip(value, args, strict=True)]
            else:
                item_type = args[0] if args else Any
                items = [coerce_field(v, item_type, name) for v in value]
            return tuple(items) if origin is tuple else items
    else:
        return value
    raise UsageError(f"field {name!r} must be {describe_type(annotation)}, got {value!r}")


def describe_type(annotation: Any) -> str:
    """A short human name of a field annotation (``int``, ``tuple of float``...)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"{len(args)} values (" + ", ".join(describe_type(a) for a in args) + ")"
        return f"a list of {describe_type(args[0]) if args else 'values'}"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", str(annotation))


# ----------------------------------------------------------------------------- saving

def _plain(value: Any) -> Any:
    """``value`` reduced to what ``weights_only`` loading accepts (dicts, lists,
    tuples, str, int, float, bool, None)."""
    if callable(getattr(value, "to_dict", None)) and not isinstance(value, type):
        return _plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "spec"):  # ChannelModel / CSIModel
        return str(value.spec)
    return str(value)


def checkpoint_dict(model: DetectorModule, training: Any = None,
                    quantization: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (see the module docstring); ``quantization``
    (a ``QuantRecipe.to_dict()``, plain data and tensors) is stored as given."""
    from mimoc import __version__

    if not isinstance(model, DetectorModule):
        raise UsageError(f"save_detector needs a mimoc DetectorModule, got {type(model).__name__}")
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "config": _plain(model.config.to_dict()),
        "state_dict": state,
        "training": _plain(training) if training is not None else {},
        "mimoc_version": __version__,
    }
    if quantization is not None:
        payload["quantization"] = dict(quantization)
    return payload


def save_detector(model: DetectorModule, path: str | os.PathLike, training: Any = None) -> Path:
    """Write ``model`` as a mimoc checkpoint, atomically (temp file + rename).

    Args:
        model: a :class:`DetectorModule` of a registered family.
        path: the file to write (its folder must exist).
        training: training metadata: a :class:`~mimoc.detectors.training.TrainReport`,
            its ``to_dict()`` or any mapping of plain values.

    Returns:
        The path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    payload = checkpoint_dict(model, training)
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


# ----------------------------------------------------------------------------- loading

@dataclass
class Checkpoint:
    """A loaded, checked checkpoint: the module (eval mode) and its metadata."""

    model: DetectorModule
    family: str
    config: DetectorConfig
    training: dict[str, Any]
    mimoc_version: str
    format_version: int
    path: Path
    quantization: dict[str, Any] | None = None  # raw section; mimoc.quant.load_quantized checks it


def load_detector(path: str | os.PathLike,
                  families: Mapping[str, type[DetectorModule]] | None = None) -> DetectorModule:
    """The detector stored in a mimoc checkpoint, in eval mode.

    Raises :class:`ModelFileError` (one line: what the file is, what to do)
    for anything that is not a valid checkpoint; see the module docstring.
    ``families`` defaults to :data:`mimoc.detectors.FAMILIES`.
    """
    return load_checkpoint(path, families).model


def load_checkpoint(path: str | os.PathLike,
                    families: Mapping[str, type[DetectorModule]] | None = None) -> Checkpoint:
    """Like :func:`load_detector`, with the family, config and training metadata."""
    if not isinstance(path, str | os.PathLike):
        raise UsageError(f"load_detector needs a checkpoint path (str or os.PathLike), got "
                         f"{type(path).__name__}")
    try:
        return _load_checkpoint(Path(path), families)
    except ModelFileError as err:
        # values quoted from the file may hold newlines; the error stays one line
        raise ModelFileError(" ".join(str(err).split())) from None


def _short(value: Any) -> str:
    """``repr`` of a value read from the file, cut to a readable length."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


def _load_checkpoint(path: Path,
                     families: Mapping[str, type[DetectorModule]] | None) -> Checkpoint:
    raw = _read_plain_data(path)
    name = str(path)
    if not isinstance(raw, dict):
        raise ModelFileError(f"{name} is a torch file holding a {type(raw).__name__}, not a mimoc "
                             f"detector checkpoint; {_HOW_TO_SAVE}")
    if raw.get("format") != FORMAT:
        if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise ModelFileError(
                f"{name} is a bare state_dict ({len(raw)} tensors) without family or config; "
                f"load it into the model it came from and {_HOW_TO_SAVE}")
        keys = ", ".join(_short(k) for k in sorted(map(str, raw))[:6]) or "none"
        raise ModelFileError(f"{name} is a torch file but not a mimoc detector checkpoint "
                             f"(keys: {keys}); {_HOW_TO_SAVE}")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{name}: checkpoint format_version {_short(version)} is not valid; "
                             f"the file is damaged, re-save the model")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{name} was written by a newer mimoc (checkpoint format "
                             f"{version}, this mimoc reads {FORMAT_VERSION}); upgrade mimoc")
    missing = [k for k in ("family", "config", "state_dict") if k not in raw]
    if missing:
        raise ModelFileError(f"{name}: checkpoint lacks {', '.join(missing)}; the file is "
                             f"damaged, re-save the model")

    if families is None:
        from mimoc.detectors.families import FAMILIES as families
    family = raw["family"]
    if not isinstance(family, str) or family not in families:
        known = ", ".join(sorted(families)) or "none"
        raise ModelFileError(f"{name}: unknown detector family {_short(family)} (this mimoc knows: "
                             f"{known}); upgrade mimoc or re-save the model")
    cls = families[family]
    try:
        config = config_from_dict(cls.Config, raw["config"])
    except MimocError as err:
        raise ModelFileError(f"{name}: invalid {family} config ({err}); the file was edited "
                             f"or damaged, re-save the model") from None

    state = raw["state_dict"]
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelFileError(f"{name}: state_dict is not a mapping of names to tensors; the "
                             f"file is damaged, re-save the model")
    model = _build_checked(cls, config, state, name)
    training = raw.get("training", {})
    if not isinstance(training, dict):
        raise ModelFileError(f"{name}: training metadata is a {type(training).__name__}, not a "
                             f"dict; the file is damaged, re-save the model")
    _check_training(training, name)
    quantization = raw.get("quantization")
    if quantization is not None and not isinstance(quantization, dict):
        raise ModelFileError(f"{name}: quantization section is a {type(quantization).__name__}, "
                             f"not a dict; the file is damaged, quantize the model again")
    return Checkpoint(model=model, family=family, config=config, training=training,
                      mimoc_version=str(raw.get("mimoc_version", "unknown")),
                      format_version=version, path=path, quantization=quantization)


def _read_plain_data(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with every failure turned into one line."""
    name = str(path)
    check_model_file(path)  # a FIFO or device would block or never end; stat it first
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise ModelFileError(f"{name}: cannot read ({err.strerror}); check the permissions") \
            from None
    if magic != _ZIP_MAGIC:
        what = "an empty file" if not magic else "not a torch checkpoint (no torch.save zip header)"
        raise ModelFileError(f"{name} is {what}; {_HOW_TO_SAVE}")
    check_zip_integrity(path)  # torch.load does not check CRCs: damaged weights would load
    if is_export_archive(path):
        todo = ("compile it as it is" if path.suffix.lower() == ".pt2" else
                f"rename it to {path.with_suffix('.pt2').name} to compile it")
        raise ModelFileError(f"{name} is a torch.export program, not a mimoc checkpoint; "
                             f"{todo} (mimoc inspect --ir shows its IR)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure of a foreign file is the user's
        message = str(err)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message)
        if found:
            raise ModelFileError(
                f"{name} contains pickled Python code ({found.group(1)}), e.g. a whole model "
                f"saved with torch.save(model); mimoc never unpickles code: {_HOW_TO_SAVE}"
            ) from None
        if "Weights only load failed" in message:
            raise ModelFileError(f"{name} holds objects other than plain data and tensors; "
                                 f"mimoc never unpickles code: {_HOW_TO_SAVE}") from None
        raise ModelFileError(f"{name} is truncated or corrupt (torch cannot read it); copy or "
                             f"save the file again") from None


# ----------------------------------------------------------------------------- training metadata

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: The ``training`` fields that mimoc reads back (inspect, report, budget, quantize) and
#: what each must be; other keys are kept as they are (plain data, like the whole entry).
_TRAINING_FIELDS: dict[str, tuple[Any, str]] = {
    "steps": (lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "seed": (_is_int, "an integer"),
    "seconds": (lambda v: v is None or _is_number(v), "a number"),
    "final_loss": (lambda v: v is None or _is_number(v), "a number"),
    "val_ser": (lambda v: v is None or _is_number(v), "a number"),
    "snr_db": (lambda v: isinstance(v, list | tuple) and len(v) == 2
               and all(_is_number(x) and math.isfinite(x) for x in v),
               "two finite numbers [lo, hi] in dB"),
    "family": (lambda v: isinstance(v, str), "a string"),
    "system": (lambda v: isinstance(v, str), "a string"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v),
                "a list of dicts"),
    "options": (lambda v: isinstance(v, dict), "a dict of training options"),
}
_MAX_NESTING = 32


def _check_training(training: dict[str, Any], name: str) -> None:
    """Refuse training metadata that later readers would trip over (a traceback in
    ``inspect`` or ``report`` instead of one line): non-plain values, known fields of
    the wrong type, training options of the wrong type."""
    odd = _non_plain(training)
    if odd is not None:
        raise ModelFileError(f"{name}: training metadata holds {odd}, not plain data; the "
                             f"file was edited or damaged, re-save the model")
    for key, (valid, want) in _TRAINING_FIELDS.items():
        if key in training and not valid(training[key]):
            raise ModelFileError(f"{name}: training metadata {key} must be {want}, got "
                                 f"{_short(training[key])}; the file was edited or damaged, "
                                 f"re-save the model")
    from mimoc.detectors.training import TrainOptions

    hints = typing.get_type_hints(TrainOptions)
    for key, value in training.get("options", {}).items():
        if key in hints:  # unknown options (other mimoc versions) are nobody's input
            try:
                coerce_field(value, hints[key], key)
            except UsageError as err:
                raise ModelFileError(f"{name}: training option {err}; the file was edited or "
                                     f"damaged, re-save the model") from None


def _non_plain(value: Any) -> str | None:
    """What in ``value`` is not plain data (dict with str keys, list, tuple, str, int,
    float, bool, None), or ``None`` when all of it is."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_NESTING:
            return f"data nested deeper than {_MAX_NESTING} levels"
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return "a dict with non-string keys"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, str | int | float | bool)):
            return f"a {type(item).__name__}"
    return None


def _build_checked(cls: type[DetectorModule], config: DetectorConfig,
                   state: Mapping[str, torch.Tensor], name: str) -> DetectorModule:
    """Build ``cls(config)`` and load ``state`` after checking names, shapes, dtypes, values."""
    _check_sizes_plausible(config, state, name)
    # A meta-device build checks the shapes a config implies without allocating them,
    # so a config edited to claim huge sizes is refused before any memory is touched.
    try:
        with torch.device("meta"):
            expected = cls(config).state_dict()
    except MimocError as err:
        raise ModelFileError(f"{name}: invalid {cls.family} config ({err}); re-save the model") \
            from None
    except Exception:  # noqa: BLE001 - a family whose constructor cannot run on meta
        expected = None
    if expected is not None:
        _check_state(expected, state, name)
    with torch.random.fork_rng():  # building consumes the global RNG; keep the caller's intact
        try:
            model = cls(config)
        except MimocError as err:
            raise ModelFileError(f"{name}: invalid {cls.family} config ({err}); re-save the "
                                 f"model") from None
    _check_state(model.state_dict(), state, name)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


def _check_sizes_plausible(config: DetectorConfig, state: Mapping[str, torch.Tensor],
                           name: str) -> None:
    """Refuse integer config values far beyond the weights in the file.

    Sizes (units, layers, antennas, iterations) of a real model stay below the
    number of values it stores; an edited config claiming millions of layers
    would otherwise spend minutes building modules before the shape check.
    """
    stored = sum(t.numel() for t in state.values())
    limit = max(4 * stored, 1 << 16)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limit:
                raise ModelFileError(f"{name}: config {f.name}={value!r} is implausibly large for "
                                     f"a file holding {stored:,} weights; the config was edited "
                                     f"or damaged, re-save the model")


def _check_state(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                 name: str) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}"
                         + (" ..." if len(unexpected) > 3 else ""))
        raise ModelFileError(f"{name}: weights do not match the config ({'; '.join(parts)}); the "
                             f"file was edited or damaged, re-save the model")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelFileError(f"{name}: weight {key} has shape {tuple(got.shape)} but the "
                                 f"config implies {tuple(want.shape)}; re-save the model")
        if got.dtype != want.dtype:
            raise ModelFileError(f"{name}: weight {key} is {got.dtype} but the model uses "
                                 f"{want.dtype}; convert the model back and re-save it")
        if got.layout != torch.strided:
            raise ModelFileError(f"{name}: weight {key} is not a dense tensor; re-save the model")
        if got.is_floating_point() or got.is_complex():
            if not bool(torch.isfinite(got).all()):
                raise ModelFileError(f"{name}: weight {key} contains NaN or Inf (training "
                                     f"diverged?); retrain the model with a lower learning rate")

