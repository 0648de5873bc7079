"""Consistency of a crossbar artifact beyond its JSON Schema: what a schema cannot say.

The schema (``mimoc/data/schemas/schedule.schema.json``) checks each field alone. A
schedule is also a web of references that the IMC simulator follows: the program's
``CrossbarMVM`` nodes name matrices, matrices name tiles, tiles name rows and columns of
their matrix, write groups name tiles, and ``arrays.npz`` holds one entry per static
matrix, static tile and constant. These checks refuse a schedule whose references do not
hold, with one line naming the file and what is wrong, before anything is allocated or
run: a damaged artifact fails here instead of deep inside a matrix product.

- :func:`check_schedule`: the schedule alone (tiles, groups, node sizes);
- :func:`check_program`: the loaded program against the schedule (its matrices are those
  the compiler would collect from it, with the same tiling);
- :func:`check_arrays`: ``arrays.npz`` against both (entries present, shapes, finite,
  conductances inside the device's range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mimoc.errors import ModelFileError, UsageError

#: Most elements of one value of the program (without the batch dims): 2^28 floats is
#: 1 GiB, far above any detector and far below what would exhaust memory silently.
MAX_NODE_ELEMENTS = 1 << 28
AGAIN = "compile the artifact again"
#: numpy dtype of a constant of each IR dtype (mimoc.compiler.ir.DTYPES)
_IR_DTYPES = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "bool": np.bool_}


def _refuse(where: str, problem: str) -> ModelFileError:
    return ModelFileError(f"{where}: {problem}; {AGAIN}")


def _expected_tiles(m: Mapping[str, Any], array: tuple[int, int]) -> list[dict[str, Any]]:
    """The tiles :func:`mimoc.targets.crossbar.arrays.tile` makes of matrix ``m``."""
    R, C = array
    rows, cols = m["rows"], m["cols"]
    return [{"id": f"{m['id']}#{i}.{j}", "tile": [i, j],
             "rows": [i * R, min((i + 1) * R, rows)], "cols": [j * C, min((j + 1) * C, cols)]}
            for i in range(math.ceil(rows / R)) for j in range(math.ceil(cols / C))]


def check_schedule(schedule: Mapping[str, Any], where: str) -> None:
    """Tiles, write groups and node sizes of a schema-valid schedule (module docstring)."""
    array = tuple(schedule["config"]["array"])
    matrices = {}
    for m in schedule["matrices"]:
        if m["id"] in matrices:
            raise _refuse(where, f"matrix {m['id']!r} is listed twice")
        matrices[m["id"]] = m
    tiles = {}
    for t in schedule["arrays"]:
        if t["id"] in tiles:
            raise _refuse(where, f"array {t['id']!r} is listed twice")
        tiles[t["id"]] = t
    for m in matrices.values():
        want = _expected_tiles(m, array)
        if (m["row_tiles"], m["col_tiles"]) != (math.ceil(m["rows"] / array[0]),
                                                math.ceil(m["cols"] / array[1])) \
                or m["tiles"] != [t["id"] for t in want]:
            raise _refuse(where, f"matrix {m['id']!r} ({m['rows']}x{m['cols']}) does not have "
                                 f"the tiles of {array[0]}x{array[1]} arrays")
        for expected in want:
            t = tiles.get(expected["id"])
            if t is None:
                raise _refuse(where, f"array {expected['id']!r} of matrix {m['id']!r} is not "
                                     "in 'arrays'")
            shape = [expected["rows"][1] - expected["rows"][0],
                     expected["cols"][1] - expected["cols"][0]]
            if (t["matrix"], t["role"], t["tile"], t["rows"], t["cols"], t["shape"]) != (
                    m["id"], m["role"], expected["tile"], expected["rows"], expected["cols"],
                    shape):
                raise _refuse(where, f"array {t['id']!r} does not match its matrix "
                                     f"{m['id']!r} (rows, columns, role or shape)")
    _check_strategy(schedule, where)
    plan = schedule["programming"]
    for kind, role in (("per_slot", "channel"), ("static", "static")):
        for group in plan[kind]["groups"]:
            for tid in group:
                if tid not in tiles or tiles[tid]["role"] != role:
                    raise _refuse(where, f"write group of programming.{kind} names "
                                         f"{tid!r}, not a {role} array")
    for node in schedule["program"]["nodes"]:
        count = 1
        for d in node["shape"]:
            count *= d if isinstance(d, int) else 1
        if count > MAX_NODE_ELEMENTS:
            raise _refuse(where, f"program node {node['name']!r} has shape {node['shape']}, "
                                 f"more than {MAX_NODE_ELEMENTS} elements per symbol")


def _check_strategy(schedule: Mapping[str, Any], where: str) -> None:
    """The strategy the simulator applies (``config.strategy``) is the one the schedule
    records (``strategy``, ``programming.per_slot.strategy``, ``strategy_search.chosen``)."""
    from mimoc.targets.crossbar.strategy import parse_strategy

    try:
        spec = parse_strategy(schedule["config"].get("strategy")).spec
    except UsageError as err:
        raise _refuse(where, f"config.strategy: {err}") from None
    recorded = {"strategy": (schedule.get("strategy") or {}).get("spec", "single"),
                "programming.per_slot.strategy": (schedule["programming"]["per_slot"]
                                                  .get("strategy") or {}).get("spec", "single")}
    if "strategy_search" in schedule:
        recorded["strategy_search.chosen"] = schedule["strategy_search"]["chosen"]
    for key, value in recorded.items():
        if value != spec:
            raise _refuse(where, f"{key} is {value!r} but config.strategy is {spec!r}")


def check_program(schedule: Mapping[str, Any], graph, where: str) -> None:
    """The program's matrices (collected as the compiler does) are the schedule's."""
    from mimoc.targets.crossbar.arrays import collect_matrices

    try:
        collected = collect_matrices(graph)
    except (UsageError, KeyError, TypeError, ValueError, IndexError) as err:
        raise _refuse(where, f"the program's matrices cannot be collected ({err})") from None
    listed = {m["id"]: m for m in schedule["matrices"]}
    found = {m.id: m for m in collected}
    if set(found) != set(listed):
        odd = sorted(set(found) ^ set(listed))[0]
        raise _refuse(where, f"matrix {odd!r} is in only one of the program and 'matrices'")
    for mid, m in found.items():
        entry = listed[mid]
        if (entry["role"], entry["form"], entry["rows"], entry["cols"], entry["bias_row"]) != (
                m.role, m.form, m.rows, m.cols, m.has_bias_row):
            raise _refuse(where, f"matrix {mid!r} is {entry['rows']}x{entry['cols']} "
                                 f"{entry['role']} {entry['form']} in 'matrices' but "
                                 f"{m.rows}x{m.cols} {m.role} {m.form} in the program")


def check_arrays(schedule: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 device, where: str) -> None:
    """Every entry the simulator reads is in ``arrays.npz``, with its shape, finite, and
    target conductances inside ``[Gmin, Gmax]`` of ``device``."""
    tiles = {t["id"]: t for t in schedule["arrays"]}

    def entry(name: str, shape: list[int], dtypes: tuple = (np.float32, np.float64)):
        value = arrays.get(name)
        if value is None:
            raise _refuse(where, f"{name!r} is missing")
        if list(value.shape) != list(shape) or value.dtype not in [np.dtype(d) for d in dtypes]:
            raise _refuse(where, f"{name!r} is {value.dtype} {list(value.shape)}, the schedule "
                                 f"says {np.dtype(dtypes[0])} {list(shape)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise _refuse(where, f"{name!r} holds NaN or infinite values")
        return value

    slack = 1e-6 * max(device.range_us, 1.0)
    for m in schedule["matrices"]:
        if m["role"] != "static":
            continue
        entry(f"{m['id']}.weights", [m["rows"], m["cols"]])
        for tid in m["tiles"]:
            for side in ("g_pos", "g_neg"):
                g = entry(f"{tid}.{side}", tiles[tid]["shape"])
                if g.size and (g.min() < device.g_min_us - slack
                               or g.max() > device.g_max_us + slack):
                    raise _refuse(where, f"{tid + '.' + side!r} holds conductances outside "
                                         f"[Gmin, Gmax] = [{device.g_min_us:g}, "
                                         f"{device.g_max_us:g}] uS of the schedule's device")
    for node in schedule["program"]["nodes"]:
        if node["op"] == "Const":
            entry(f"const/{node['name']}", node["shape"], (_IR_DTYPES[node["dtype"]],))


__all__ = ["MAX_NODE_ELEMENTS", "check_arrays", "check_program", "check_schedule"]
