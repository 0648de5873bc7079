"""One validation layer for the JSON files mimoc reads: strict parsing and JSON Schema checks.

Every JSON file mimoc reads from a user or a stranger (an artifact's ``manifest.json`` or
``schedule.json``, a device or processor profile) goes through here:

- :func:`parse_json`: size-capped, UTF-8, no ``NaN``/``Infinity`` (Python's :mod:`json`
  accepts them, JSON does not), no duplicate keys;
- :func:`validate`: every number finite (``1e999`` parses as infinity), then the file's
  JSON Schema (``mimoc/data/schemas/<name>.schema.json``, checked with the ``jsonschema``
  library). The first problem becomes ONE line naming the file and the failing field::

      'out/x/schedule.json': field 'totals.per_slot_s' must be a number >= 0, got -3;
      compile the artifact again

Schemas may carry two annotations of mimoc's own (JSON Schema ignores unknown keywords):
``x-must`` (what the value must be, in words, replacing the generic text) and ``x-fix``
(what to do, used where the caller gives no ``fix``: a profile's author is told how to
correct the field, an artifact's user to compile it again). ``"integer"`` means a JSON
integer: ``150.0`` is refused, as is ``true`` where a number is expected.

The commands' JSON output has schemas too (``data/schemas/output/<command>.schema.json``):
:func:`output_envelope` gives the keys every output document starts with and
:func:`validate_output` checks a document against its command's schema.

Example::

    >>> data = parse_json(path.read_bytes(), where=repr(str(path)))
    >>> validate(data, "manifest", file=path, fix="compile the artifact again")
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from mimoc.errors import MimocError, ModelFileError

#: Largest JSON file read (a crossbar schedule of the largest shipped model is a few MB).
MAX_JSON_BYTES = 256 << 20
SCHEMA_ID = "urn:mimoc:schema:{}"
#: Folder (under ``data/schemas``) of the schemas of the commands' JSON output.
OUTPUT_DIR = "output"
#: Format version of each command's JSON output: bumped on every incompatible change (a key
#: removed, renamed or retyped); adding a key is compatible.
OUTPUT_VERSIONS = {"train": 1, "quantize": 1, "compile": 1, "inspect": 1, "ber": 1,
                   "bench": 1, "budget": 1, "report": 1, "devices": 1, "sweep": 1}
_TYPE_WORDS = {"object": "a JSON object", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


# ----------------------------------------------------------------------------- parsing

def _reject_constant(token: str):
    raise ValueError(f"{token} is not a valid JSON number")


def _no_duplicates(pairs):
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def parse_json(data: bytes | str, *, where: str, fix: str = "",
               error: type[MimocError] = ModelFileError) -> Any:
    """The parsed JSON value of ``data``; a one-line ``error`` (``where`` is not valid
    JSON: why; ``fix``) for oversized, non-UTF-8 or invalid text, NaN/Infinity and
    duplicate keys."""
    tail = f"; {fix}" if fix else ""
    if len(data) > MAX_JSON_BYTES:
        raise error(f"{where} is {len(data)} bytes, more than a mimoc JSON file can be "
                    f"({MAX_JSON_BYTES >> 20} MiB){tail}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise error(f"{where} is not UTF-8 text (not a JSON file){tail}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant,
                          object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise error(f"{where} is not valid JSON (nested too deeply){tail}") from None
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        message = " ".join(str(err).split())
        raise error(f"{where} is not valid JSON ({message}){tail}") from None


def read_json(path: str | os.PathLike, *, where: str | None = None, fix: str = "",
              error: type[MimocError] = ModelFileError) -> Any:
    """:func:`parse_json` of a file, read only up to the size cap."""
    where = where or repr(os.fspath(path))
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except OSError as err:
        raise error(f"cannot read {where}: {err.strerror or err}") from None
    return parse_json(data, where=where, fix=fix, error=error)


# ----------------------------------------------------------------------------- schemas

@cache
def load_schema(name: str) -> dict[str, Any]:
    """The shipped schema ``mimoc/data/schemas/<name>.schema.json``."""
    text = (resources.files("mimoc") / "data" / "schemas" / f"{name}.schema.json").read_text()
    return json.loads(text)


@cache
def _validator(name: str):
    import jsonschema
    from referencing import Registry, Resource

    # the output schemas refer to the input ones (compile --json holds a manifest.json)
    folder = resources.files("mimoc") / "data" / "schemas" / OUTPUT_DIR
    names = schema_names() + [f"{OUTPUT_DIR}/{e.name.removesuffix('.schema.json')}"
                              for e in folder.iterdir() if e.name.endswith(".schema.json")]
    resources_ = [(load_schema(n)["$id"], Resource.from_contents(load_schema(n)))
                  for n in names]
    registry = Registry().with_resources(resources_)
    base = jsonschema.Draft202012Validator
    # JSON Schema's "integer" takes 150.0; a count written as a float is a mistake here.
    strict = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
    cls = jsonschema.validators.extend(base, type_checker=strict)
    schema = load_schema(name)
    base.check_schema(schema)
    return cls(schema, registry=registry)


def schema_names() -> list[str]:
    """The shipped schemas' names (``manifest``, ``schedule``, ``device``, ...)."""
    folder = resources.files("mimoc") / "data" / "schemas"
    return sorted(e.name.removesuffix(".schema.json") for e in folder.iterdir()
                  if e.name.endswith(".schema.json"))


def output_schema_names() -> list[str]:
    """The commands whose ``--json`` output has a shipped schema
    (``mimoc/data/schemas/output/<command>.schema.json``)."""
    folder = resources.files("mimoc") / "data" / "schemas" / OUTPUT_DIR
    # envelope.schema.json holds what the others share (the envelope, BER curves)
    return sorted(e.name.removesuffix(".schema.json") for e in folder.iterdir()
                  if e.name.endswith(".schema.json") and e.name != "envelope.schema.json")


def output_envelope(command: str, argv: list[str] | None) -> dict[str, Any]:
    """The keys every JSON document mimoc writes starts with: ``schema`` (the versioned
    id of its format, ``mimoc-<command>/<version>``), ``mimoc_version`` and ``command``
    (the command line as a list, ``["mimoc", "ber", ...]``; null when the document was
    made through the Python API)."""
    from mimoc import __version__

    return {"schema": f"mimoc-{command}/{OUTPUT_VERSIONS[command]}",
            "mimoc_version": __version__,
            "command": None if argv is None else [str(a) for a in argv]}


def validate_output(command: str, document: Any) -> Any:
    """Check a command's JSON output (``mimoc <command> --json``, ``report.json``) against
    its shipped schema; a :class:`MimocError` names the first failing field."""
    return validate(document, f"{OUTPUT_DIR}/{command}", origin=f"mimoc {command} --json",
                    error=MimocError)


def field_path(path) -> str:
    """``["totals", "per_slot_s"]`` -> ``totals.per_slot_s``; ``[..., 3]`` -> ``[3]``;
    keys that are not plain names in brackets: ``files["slot.onnx"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _non_finite(value: Any, path: list) -> Iterator[tuple[list, float]]:
    # iterative: a deep file must not exhaust the stack here either
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            yield where, item
        elif isinstance(item, dict):
            stack.extend((v, where + [k]) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, where + [i]) for i, v in reversed(list(enumerate(item))))


def _bound(keyword: str, limit: Any) -> str:
    number = str(limit) if isinstance(limit, int) else f"{limit:g}"
    return {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">",
            "exclusiveMaximum": "<"}[keyword] + f" {number}"


def _problem(err) -> str:
    """What is wrong with the value, in words (after ``field 'x.y'``)."""
    schema, value, keyword, limit = err.schema, err.instance, err.validator, err.validator_value
    if isinstance(schema, dict) and "x-must" in schema:
        return f"must be {schema['x-must']}, got {_short(value)}"
    if keyword == "type":
        kinds = [limit] if isinstance(limit, str) else list(limit)
        return f"must be {' or '.join(_TYPE_WORDS.get(k, k) for k in kinds)}, got {_short(value)}"
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        kinds = schema.get("type", [])
        word = "an integer" if "integer" in kinds and "number" not in kinds else "a number"
        return f"must be {word} {_bound(keyword, limit)}, got {_short(value)}"
    if keyword == "const":
        return f"must be {json.dumps(limit)}, got {_short(value)}"
    if keyword == "enum":
        return f"must be one of {', '.join(json.dumps(v) for v in limit)}, got {_short(value)}"
    if keyword in ("minItems", "maxItems"):
        more = "at least" if keyword == "minItems" else "at most"
        return f"must have {more} {limit} item(s), got {len(value)}"
    if keyword in ("minLength", "maxLength"):
        more = "at least" if keyword == "minLength" else "at most"
        return f"must have {more} {limit} character(s), got {_short(value)}"
    if keyword in ("minProperties", "maxProperties"):
        more = "at least" if keyword == "minProperties" else "at most"
        return f"must have {more} {limit} key(s)"
    if keyword == "pattern":
        return f"must match {limit}, got {_short(value)}"
    return " ".join(err.message.split())[:120]


def _message(err, fix: str, root: dict) -> str:
    """``missing key 'a.b'`` / ``unknown key 'a.c'; did you mean ...`` / ``field 'a.d'
    must be ...; fix`` (the caller's ``fix``, else the field's or the schema's x-fix)."""
    path = list(err.absolute_path)
    own_fix = err.schema.get("x-fix") if isinstance(err.schema, dict) else None
    fix = fix or own_fix or root.get("x-fix", "")
    tail = f"; {fix}" if fix else ""
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        return f"missing key {field_path(path + missing[:1])!r}{tail}"
    if err.validator == "unevaluatedProperties":
        # which keys no branch evaluated is known only from the message ('x' was unexpected)
        extra = re.findall(r"'([^']*)'", err.message.rpartition("(")[2]) or ["?"]
        return f"unknown key {field_path(path + extra[:1])!r}{tail}"
    if err.validator == "additionalProperties":
        known = list(err.schema.get("properties", {}))
        extra = sorted(str(k) for k in err.instance if k not in known)[:1] or ["?"]
        close = difflib.get_close_matches(extra[0], known, n=1)
        if close:
            tail = f"; did you mean {close[0]!r}?"
        return f"unknown key {field_path(path + extra)!r}{tail}"
    field = field_path(path)
    subject = f"field {field!r}" if field else "the file"
    return f"{subject} {_problem(err)}{tail}"


def validate(data: Any, schema: str, *, file: str | os.PathLike | None = None,
             origin: str | None = None, fix: str = "",
             error: type[MimocError] = ModelFileError) -> Any:
    """Check ``data`` against the shipped schema ``schema``; return ``data`` unchanged.

    The message starts with ``origin`` if given, else the quoted ``file`` path, and ends
    with ``fix`` (without one: the failing field's ``x-fix``, else the schema's). Non-finite
    numbers are refused first, wherever they are.
    """
    where = origin or (repr(os.fspath(file)) if file is not None else f"the {schema} file")
    for path, value in _non_finite(data, []):
        field = field_path(path)
        subject = f"field {field!r}" if field else "the file"
        tail = fix or load_schema(schema).get("x-fix")
        raise error(f"{where}: {subject} must be a finite number, got {value!r}"
                    + (f"; {tail}" if tail else ""))
    import jsonschema

    errors = list(_validator(schema).iter_errors(data))
    # a failing allOf branch leaves its keys "unevaluated": the branch's own error is the news
    errors = [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    best = jsonschema.exceptions.best_match(errors)
    if best is None:
        return data
    # best_match descends into anyOf branches; a branch's own words are less clear than
    # the x-must of the choice above it
    chosen = best
    while chosen.parent is not None:
        chosen = chosen.parent
        if isinstance(chosen.schema, dict) and "x-must" in chosen.schema:
            best = chosen
    raise error(f"{where}: {_message(best, fix, load_schema(schema))}")


__all__ = ["MAX_JSON_BYTES", "OUTPUT_VERSIONS", "field_path", "load_schema",
           "output_envelope", "output_schema_names", "parse_json", "read_json", "schema_names",
           "validate", "validate_output"]
