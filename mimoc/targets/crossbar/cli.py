"""The crossbar flags of ``mimoc compile`` and the crossbar branch of its ``run``."""

from __future__ import annotations

import argparse
import json

from mimoc.errors import UsageError
from mimoc.targets.crossbar.config import ACCUMULATIONS, STATIC_CLIPS, WRITE_PARALLEL


def add_crossbar_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("crossbar target (--target crossbar)")
    group.add_argument("--device", default=None, metavar="ID|PATH",
                       help="device profile: ftj-luo2022 (default), rram-zeng2023, "
                            "fefet-jerry2017, or the path of a JSON profile")
    group.add_argument("--array", default=None, metavar="RxC",
                       help="maximum array size, rows x columns (default 128x128)")
    group.add_argument("--slot", type=int, default=None, metavar="S",
                       help="symbols per coherence slot for the per-slot totals (default 14)")
    group.add_argument("--accumulation", default=None, choices=ACCUMULATIONS,
                       help="partial sums of row tiles: analog adder (default) or digital")
    group.add_argument("--static-clip", default=None, choices=STATIC_CLIPS,
                       help="w_clip of static weights: max-abs (default) or percentile")
    group.add_argument("--write-parallel", default=None, choices=WRITE_PARALLEL,
                       help="write circuits: one per tile (default), per matrix, or one")
    group.add_argument("--mc-draws", type=int, default=None, metavar="N",
                       help="channel draws for the expected programming time (default 32)")


CROSSBAR_FLAGS = ("device", "array", "slot", "accumulation", "static_clip", "write_parallel",
                  "mc_draws")


def reject_crossbar_flags(args: argparse.Namespace) -> None:
    """A crossbar flag with another target is a mistake, not something to ignore."""
    for name in CROSSBAR_FLAGS:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} is an option of the crossbar target; add --target "
                             "crossbar or leave it out")


def _options(args: argparse.Namespace) -> dict:
    out = {}
    for name in ("accumulation", "static_clip", "write_parallel", "mc_draws"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    return out


def summary(result) -> str:
    s = result.schedule
    t, p = s["totals"], s["peripherals"]
    roles = {"static": 0, "channel": 0}
    for a in s["arrays"]:
        roles[a["role"]] += 1
    lines = [f"compiled {s['model'].get('name')} for crossbar ({s['device']['name']}, arrays "
             f"{s['config']['array'][0]}x{s['config']['array'][1]}) -> {result.path}/ "
             "(schedule.json, arrays.npz)",
             result.report(),
             f"tiles: {roles['channel']} channel (programmed per slot), {roles['static']} "
             f"static; {p['arrays']} physical arrays, {p['cells']:,} cells",
             f"programming per slot {t['programming_s_per_slot'] * 1e9:.1f} ns (expected over "
             f"{s['programming']['per_slot']['draws']} channel draws), symbol "
             f"{t['symbol_s'] * 1e9:.1f} ns, per slot of {t['slot_symbols']} symbols "
             f"{t['per_slot_s'] * 1e9:.1f} ns; static program-and-verify once "
             f"{t['static_programming_s'] * 1e6:.2f} us",
             "mimoc inspect DIR shows the tables; mimoc ber DIR --c2c ... simulates it"]
    return "\n".join(line for line in lines if line)


def run_crossbar_compile(args: argparse.Namespace, dump) -> int:
    from mimoc.commands.pass_flags import pass_options
    from mimoc.targets.crossbar.build import compile_crossbar

    for flag in ("quant", "lowering", "bits"):
        if getattr(args, flag, None) is not None:
            raise UsageError(f"--{flag} is an option of the onnx target; the crossbar target "
                             "maps fp32 weights onto device states")
    result = compile_crossbar(args.model, args.output, passes=args.passes,
                              dump_after=args.dump_after, on_dump=dump, force=args.force,
                              options=pass_options(args), device=args.device, array=args.array,
                              slot=args.slot, config=_options(args), progress=True)
    if args.json:
        schedule = json.loads((result.path / "schedule.json").read_text())
        schedule.pop("program", None)
        print(json.dumps({"path": str(result.path), **schedule}))
    else:
        print(summary(result))
    return 0
