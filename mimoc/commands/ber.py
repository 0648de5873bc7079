"""``mimoc ber``: Monte Carlo SER/BER curves of classical and trained detectors."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from mimoc.commands import flags
from mimoc.commands.artifact_flags import add_allow_modified_argument, verify_artifacts
from mimoc.commands.ber_llr import llr_recorder, write_llrs
from mimoc.commands.ber_memory import MAX_ANTENNAS, check_sizes  # noqa: F401
from mimoc.commands.ber_parallel import add_parallel_arguments, ray_executor, wants_ray
from mimoc.commands.writing import one_line_on_write_error
from mimoc.errors import MimocError, UsageError
from mimoc.sim.ber import (
    DEFAULT_MIN_ERROR_SLOTS,
    DEFAULT_MIN_ERRORS,
    BERResult,
    EngineDetector,
    classical,
    from_module,
    simulate,
)
from mimoc.sim.channels import CSIModel, parse_channel
from mimoc.sim.detectors import CLASSICAL_DETECTORS, detector_specs
from mimoc.sim.modulation import MODULATIONS, PAM_MODULATIONS, get_constellation
from mimoc.sim.snr import SNR_DEFINITIONS
from mimoc.sim.system import SYSTEMS, MIMOSystem

NAME = "ber"
HELP = "simulate symbol and bit error rates versus SNR"
DESCRIPTION = """\
Monte Carlo symbol- and bit-error rates (SER, BER) of one or more detectors on
an Nt x Nr MIMO link, with 95% confidence intervals.

Each SNR point draws batches of slots (S symbol vectors sharing one channel)
until every detector has made --min-errors symbol errors in at least
--min-error-slots different slots, or --max-symbols scalar symbols have been
sent. Errors cluster by slot (a bad channel spoils many of its S x Nt symbols
at once), so the slot, not the symbol, is the independent unit: the intervals
are Wilson intervals on the effective sample size N/deff, with the design
effect deff estimated from the spread of the per-slot error counts (about 1
for independent errors; with no errors, every slot counts as one trial).

Linear detectors: zf; mmse, the biased (H^T H + N0 I)^-1 H^T y; lmmse, the same
scaled per stream to unit gain (the unbiased LMMSE of Sionna and the textbooks; the
same QPSK decisions as mmse, better 16/64-QAM ones).

Several detectors (--detector zf,mmse,ml) see the same channel and noise
draws, so their curves compare point by point. The draws of a point depend
only on --seed and its SNR value: a point gives the same numbers whatever
other points are in the list.

SNR conventions (--snr-def), for unit-energy symbols (Es = 1) and CN(0,1)
channel entries; N0 is the complex noise variance per receive antenna:
  per-stream  rho = Es/N0 per transmitted stream, so N0 = 1/rho (default;
              Sionna's 1/no).
  per-rx      SNR per receive antenna = E||Hx||^2 / E||n||^2 = Nt/N0, so
              N0 = Nt/SNR (RE-MIMO, MMNet).
  detnet      SNR = (tr(H_r^T H_r)/K) / sigma^2 in the real model, K = 2Nt,
              sigma^2 = N0/2 per real noise component, so
              N0 = 2 tr(H_r^T H_r)/(K SNR), drawn per channel (DetNet).
  ebno        Eb/N0 per stream for an uncoded link (rate 1), Eb = Es/log2(M),
              so N0 = 1/(log2(M) Eb/N0).

Real systems (--system real, the DetNet and WeSNet papers' link): H [Nr, Nt]
with N(0,1) entries, real BPSK/4pam/8pam symbols (Es = 1), noise N(0, N0/2)
per receive dimension; each convention keeps its meaning per real dimension:
per-stream and ebno as above, per-rx = Nt/(N0/2) (N0 = 2Nt/SNR), detnet with
K = Nt. Detectors see H [B, Nr, Nt], y [B, S, Nr] and return [B, S, Nt].

Soft output (--output llr): every detector's estimate also gives max-log LLRs
log P(b=1)/P(b=0) per bit (Sionna's sign; Gaussian post-detection model with the
per-stream error variance mean |x_hat - x|^2 of each batch), and each point of
--json gains "gmi" (the BICM rate these LLRs support, bits per channel use,
maximised over one LLR scale) and "llr_scale"; the object gains "llr".
--save-llr FILE.npz also writes the LLRs and sent bits (see mimoc.sim.llr.LLRRecorder).

JSON output (--json) is one object (schema "mimoc-ber/1", docs/json.md):
  {"schema": "mimoc-ber/1", "mimoc_version": .., "command": ["mimoc", "ber", ..],
   "nt": 4, "nr": 8, "modulation": "qpsk", "snr_def": "per-stream",
   "channel": "rayleigh", "csi": "perfect", "slot_symbols": 14, "seed": 0,
   "max_symbols": .., "min_errors": .., "min_error_slots": ..,
   "curves": [{"detector": {"name": "mmse", "kind": "classical", "spec": "mmse"},
               "points": [{"snr_db": 0.0, "ser": .., "ber": .., "ser_ci": [lo, hi],
                           "ber_ci": [lo, hi], "symbols": .., "errors": ..,
                           "bit_errors": .., "slots": .., "error_slots": ..,
                           "effective_symbols": .., "effective_bits": ..}, ...]}, ...]}
"curves" has one entry per detector, in order, also for one detector. A
detector's "kind" is classical, model (a .pt file: "path") or artifact ("path",
"target": onnx or crossbar, and for crossbar curves "c2c": the --c2c level, null
for the device's own).
"symbols" counts scalar complex symbols (slots x S x Nt), "errors" symbol
errors, "bit_errors" bit errors out of symbols x log2(M) bits, "slots" the
channel draws, "error_slots" the slots with a symbol error, and
"effective_symbols"/"effective_bits" the effective sample sizes N/deff behind
"ser_ci"/"ber_ci".

CSV output (--csv FILE) has one row per detector and SNR point, with the header
  detector,snr_db,symbols,errors,ser,ser_lo,ser_hi,bits,bit_errors,ber,ber_lo,
  ber_hi,slots,effective_symbols
(the --json numbers: "*_lo"/"*_hi" are the 95% interval, "bits" = symbols x
log2(M)); floats are written in full precision.

Plots (--plot FILE): the extension picks the format, .png, .pdf or .svg (PDF and
SVG for papers; the same run gives the same bytes). --metric picks the error rate:
ber (default), ser, or both (two panels, BER left, SER right).

examples:
  mimoc ber --detector zf,mmse --nt 4 --nr 8 --mod qpsk --snr 0:2:10 --plot ber.png
  mimoc ber --detector zf,mmse --snr 0:2:10 --plot ser.pdf --metric ser --csv ser.csv
  mimoc ber --detector mmse --nt 8 --nr 8 --mod 16qam --snr -2,0,2 --channel kronecker:0.5
  mimoc ber --detector zf,trained/detnet.pt --nt 4 --nr 8 --snr 0:2:10 --json
  mimoc ber out/detnet --detector trained/detnet.pt --snr 0:2:10   # compiled vs original
  mimoc ber out/xb --detector trained/detnet.pt --c2c 0,0.01,0.02,0.03,0.04   # crossbar
"""

#: Columns of ``--csv``, one row per detector and SNR point.
CSV_COLUMNS = ("detector", "snr_db", "symbols", "errors", "ser", "ser_lo", "ser_hi", "bits",
               "bit_errors", "ber", "ber_lo", "ber_hi", "slots", "effective_symbols")
#: More points than this is almost certainly a typo in a range.
MAX_SNR_POINTS = flags.MAX_LIST_POINTS


# -- argument parsing ----------------------------------------------------------

def parse_snr_list(text: str) -> list[float]:
    """Parse ``--snr``: comma-separated values and inclusive ranges ``START:STEP:STOP``
    (or ``START:STOP``, step 1), negatives included, sorted: the one grammar of every
    command (:func:`mimoc.commands.flags.parse_number_list`).

    ``"0,2,4"`` -> ``[0, 2, 4]``; ``"0:2:10"`` -> ``[0, 2, 4, 6, 8, 10]`` (the end is
    included when the steps land on it, like MATLAB); items can be mixed
    (``"0:5:10,12"``). A duplicate is an error.
    """
    return flags.parse_number_list(text, "--snr")


def _positive_int(name: str, value: int) -> int:
    if value < 1:
        raise UsageError(f"{name} must be a positive integer, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "artifacts", nargs="*", metavar="ARTIFACT_DIR",
        help="compiled artifacts ('mimoc compile' output directories) to evaluate, after the "
             "--detector entries, on the same draws")
    parser.add_argument(
        "--detector", default=None, metavar="LIST",
        help=f"comma-separated detectors: classical ({', '.join(detector_specs())}; "
             "kbest:K keeps K candidates, amp:T runs T iterations), "
             "paths of trained models saved by mimoc (.pt) and/or compiled artifact "
             "directories; default: mmse, or none when ARTIFACT_DIRs are given")
    parser.add_argument("--nt", type=int, default=None,
                        help="transmit antennas / streams Nt (default: the first model's, "
                             "else 4)")
    parser.add_argument("--nr", type=int, default=None,
                        help="receive antennas Nr (default: the first model's, else 8)")
    parser.add_argument("--mod", default=None, metavar="MOD",
                        help=f"modulation: {', '.join(MODULATIONS)} or, also in a real "
                             f"system, {', '.join(PAM_MODULATIONS[1:])} (Gray, unit energy; "
                             "default: the first model's, else qpsk)")
    flags.add(parser, "snr", NAME,
              help="SNR points in dB: a comma-separated list (0,2,4) and/or inclusive ranges "
                   "START:STEP:STOP (0:2:10 = 0,2,...,10) or START:STOP (step 1), negatives "
                   "included (--snr -4:2:10)")
    parser.add_argument("--snr-def", default="per-stream", choices=SNR_DEFINITIONS,
                        help="SNR convention, formulas above (default: per-stream)")
    flags.add(parser, "system", NAME, choices=SYSTEMS)
    parser.add_argument(
        "--channel", default="rayleigh", metavar="SPEC",
        help="rayleigh (i.i.d. CN(0,1)), kronecker:RHO (exponential correlation "
             "R_ij = RHO^|i-j| at both ends), kronecker:rx=RHO,tx=RHO, task:ID or "
             "file:H.npy[,normalize] (realisations from a file); default: rayleigh")
    parser.add_argument(
        "--csi", default="perfect", metavar="SPEC",
        help="receiver's channel knowledge: perfect, ls:NP@SNR (least squares from NP "
             "orthogonal pilots at pilot SNR dB per stream) or error:SNR (H + W with "
             "||H||^2/||W||^2 = SNR dB); default: perfect")
    flags.add(parser, "slot", NAME,
              help="symbol vectors per slot sharing one channel (block fading; the slot "
                   "changes the spread of the estimate, not its expectation)")
    flags.add(parser, "seed", NAME)
    flags.add(parser, "max-symbols", NAME,
              help="symbol budget per SNR point, in scalar complex symbols")
    parser.add_argument("--min-errors", type=int, default=DEFAULT_MIN_ERRORS, metavar="N",
                        help="stop a point once every detector has this many symbol errors "
                             f"(default: {DEFAULT_MIN_ERRORS}) ...")
    parser.add_argument("--min-error-slots", type=int, default=None, metavar="N",
                        help="... in at least N different slots, so that one bad channel "
                             "cannot end a point (default: "
                             f"{DEFAULT_MIN_ERROR_SLOTS}, or --min-errors if smaller)")
    flags.add(parser, "batch", NAME, type=int,
              help="slots per Monte Carlo batch; the draws depend on it")
    flags.add(parser, "c2c", NAME,
              help="crossbar artifacts (mimoc compile --target crossbar): simulate one "
                   "curve per cycle-to-cycle variation level, e.g. 0,0.01,0.02,0.03,0.04 "
                   "or 0:0.01:0.04")
    parser.add_argument("--time-since-programming", type=float, default=None,
                        metavar="SECONDS",
                        help="crossbar artifacts: read the static arrays this long after "
                             "they were programmed (conductance drift of devices whose "
                             "profile sets drift_nu; docs/devices.md)")
    parser.add_argument("--output", default="hard", choices=("hard", "llr"),
                        help="llr: also max-log LLRs and their GMI per point (see above)")
    parser.add_argument("--save-llr", default=None, metavar="FILE.npz",
                        help="with --output llr: write every LLR and sent bit to FILE.npz")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (format above) instead of a table")
    parser.add_argument("--plot", metavar="PATH",
                        help="also write an error-rate-vs-SNR plot (log axis, 95%% CI bars); "
                             "the extension picks the format: .png, .pdf or .svg")
    parser.add_argument("--metric", default=None, choices=("ber", "ser", "both"),
                        help="what --plot draws: ber (default), ser, or both (two panels)")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="also write the curves as CSV, one row per detector and SNR "
                             "point: " + ", ".join(CSV_COLUMNS))
    flags.add(parser, "threads", NAME,
              help="CPU threads for torch (the Monte Carlo work is many small batched "
                   "matrix operations that gain little from more threads and lose much on a "
                   "busy machine; raise it for large trained models)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (it is shown only when stderr is a terminal)")
    add_allow_modified_argument(parser)
    add_parallel_arguments(parser)


# -- detectors -------------------------------------------------------------------

def _looks_like_model_file(entry: str) -> bool:
    return entry.endswith(".pt") or os.sep in entry or Path(entry).is_file()


def _load_model(path: str, system: MIMOSystem) -> EngineDetector:
    if not Path(path).is_file():
        raise UsageError(f"model file {path!r} not found; give the path of a .pt file saved "
                         "by 'mimoc train'")
    # the zoo is heavy; load it only when asked. A quantized checkpoint ('mimoc quantize')
    # runs as its fake-quantized model.
    from mimoc.quant import QuantizedDetector, load_quantized

    model, recipe = load_quantized(path)
    config = getattr(model, "config", None)
    if config is not None:
        _check_sizes(path, config, system)
    return from_module(model if recipe is None else QuantizedDetector(model, recipe))


def _check_sizes(name: str, config, system: MIMOSystem) -> None:
    """A model fixes Nr and the modulation; RE-MIMO serves any Nt in [nt_min, nt]."""
    get = config.get if isinstance(config, dict) else (lambda k, d: getattr(config, k, d))
    nt_max, nr = get("nt", system.nt), get("nr", system.nr)
    nt_min = get("nt_min", None) or nt_max
    modulation = get_constellation(get("modulation", system.modulation)).name
    built_for = get("system", "complex")
    if built_for != system.system:
        raise UsageError(f"model {name!r} was built for a {built_for} system; "
                         f"run with --system {built_for}")
    if modulation != system.modulation or nr != system.nr or not nt_min <= system.nt <= nt_max:
        sizes = f"{nt_max}" if nt_min == nt_max else f"{nt_min}..{nt_max}"
        raise UsageError(
            f"model {name!r} was built for Nt={sizes}, Nr={nr}, {modulation}; "
            f"run with --nt {nt_max} --nr {nr} --mod {modulation}")


def _is_artifact(entry: str) -> bool:
    from mimoc.commands.ber_artifacts import artifact_kind

    return artifact_kind(entry) is not None


def _load_artifact(path: str, system: MIMOSystem, verify: bool = True) -> EngineDetector:
    from mimoc.runtime import load

    artifact = load(path, verify=verify)  # onnx or iree (the crossbar has its own entry)
    _check_sizes(path, dict(artifact.config), system)
    return artifact.engine()


def model_sizes(entries: list[str]) -> dict | None:
    """Nt, Nr and modulation of the first model or artifact among ``entries`` (or None)."""
    for entry in entries:
        if _is_artifact(entry):
            from mimoc.commands.ber_artifacts import artifact_config

            config = artifact_config(entry)
        elif entry.lower().partition(":")[0] not in CLASSICAL_DETECTORS and \
                Path(entry).is_file():
            from mimoc.detectors import load_detector

            model_config = getattr(load_detector(entry), "config", None)
            config = model_config.to_dict() if model_config is not None else {}
        else:
            continue
        if {"nt", "nr", "modulation"} <= set(config):
            return {"nt": config["nt"], "nr": config["nr"], "mod": config["modulation"],
                    "system": config.get("system", "complex")}
    return None


def build_detectors(spec: str, system: MIMOSystem, c2c: str | None = None,
                    seed: int = 0, verify: bool = True, time_s: float | None = None,
                    ) -> dict[str, EngineDetector]:
    """``--detector`` list -> engine detectors, keyed by the entries as given (a crossbar
    artifact gives one detector per ``c2c`` level, ``DIR@c2c=0.01``; ``verify=False``:
    artifacts modified after compiling are used, ``--allow-modified``)."""
    from mimoc.commands.ber_artifacts import (
        artifact_config,
        artifact_kind,
        crossbar_detectors,
        parse_c2c_list,
    )

    def is_crossbar(entry: str) -> bool:
        return artifact_kind(entry) == "crossbar"

    levels = parse_c2c_list(c2c)
    entries = [entry.strip() for entry in spec.split(",")]
    if not spec.strip() or any(not entry for entry in entries):
        raise UsageError(f"malformed --detector {spec!r}: empty entry; e.g. --detector zf,mmse")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        raise UsageError(f"--detector lists {', '.join(repeated)} more than once; "
                         "give each detector once")
    detectors: dict[str, EngineDetector] = {}
    for entry in entries:
        if entry.lower().partition(":")[0] in CLASSICAL_DETECTORS:
            detectors[entry] = classical(entry.lower(), system.constellation)
        elif is_crossbar(entry):
            _check_sizes(entry, dict(artifact_config(entry)), system)
            detectors.update(crossbar_detectors(entry, levels, seed, verify=verify,
                                                time_s=time_s))
        elif _is_artifact(entry):
            detectors[entry] = _load_artifact(entry, system, verify=verify)
        elif _looks_like_model_file(entry):
            detectors[entry] = _load_model(entry, system)
        else:
            raise UsageError(f"unknown detector {entry!r}; choose from "
                             f"{', '.join(CLASSICAL_DETECTORS)} or give the path of a trained "
                             "model (.pt)")
    if c2c is not None and not any(is_crossbar(entry) for entry in entries):
        raise UsageError("--c2c sets the device noise of crossbar artifacts; give a directory "
                         "from 'mimoc compile --target crossbar'")
    if time_s is not None and not any(is_crossbar(entry) for entry in entries):
        raise UsageError("--time-since-programming sets the drift of crossbar artifacts; give "
                         "a directory from 'mimoc compile --target crossbar'")
    return detectors


def detector_identities(spec: str, c2c: str | None = None) -> dict[str, dict]:
    """What each detector of :func:`build_detectors` is, for ``--json``: ``kind``
    (``classical``, ``model`` or ``artifact``), ``spec`` (the entry as given), and for files
    their ``path``; an artifact's ``target`` and a crossbar curve's ``c2c`` level (null: the
    device's own)."""
    from mimoc.commands.ber_artifacts import artifact_kind, parse_c2c_list

    out: dict[str, dict] = {}
    for entry in (e.strip() for e in spec.split(",")):
        target = None if entry.lower().partition(":")[0] in CLASSICAL_DETECTORS \
            else artifact_kind(entry)
        if target is None:
            kind = "classical" if entry.lower().partition(":")[0] in CLASSICAL_DETECTORS \
                else "model"
            out[entry] = {"kind": kind, "spec": entry,
                          **({"path": entry} if kind == "model" else {})}
        elif target == "crossbar":
            for level in parse_c2c_list(c2c):
                name = entry if level is None else f"{entry}@c2c={level:g}"
                out[name] = {"kind": "artifact", "spec": entry, "path": entry,
                             "target": target, "c2c": level}
        else:
            out[entry] = {"kind": "artifact", "spec": entry, "path": entry, "target": target}
    return out


def _dry_run(detectors: dict[str, EngineDetector], system: MIMOSystem, snr_db: float) -> None:
    """Run every detector on one slot so that size errors (ZF with Nt > Nr, ML over too
    many candidates, a model built for other sizes) surface before the long run."""
    import torch

    batch = system.sample(1, snr_db, torch.Generator().manual_seed(0))
    for name, detect in detectors.items():
        try:
            with torch.no_grad():
                x_hat = detect(batch.H_est, batch.y, batch.noise_var)
        except MimocError:
            raise
        except RuntimeError as err:  # shape mismatches inside a model
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"detector {name!r} failed on a {system.nt}x{system.nr} "
                             f"{system.modulation} input ({first}); check --nt/--nr/--mod") \
                from None
        if tuple(x_hat.shape) != tuple(batch.x.shape):
            raise UsageError(f"detector {name!r} returned shape {tuple(x_hat.shape)}, expected "
                             f"{tuple(batch.x.shape)}; check --nt/--nr/--mod")


# -- output -----------------------------------------------------------------------

def _ci(interval) -> str:
    return f"[{interval[0]:.2e}, {interval[1]:.2e}]"


def format_table(result: BERResult) -> str:
    """A fixed-width table of every point, one row per detector and SNR."""
    from mimoc.tables import text_table

    s = result.system
    header = (f"{s.nt}x{s.nr} {s.modulation}{' (real system)' if s.real else ''}, "
              f"{s.channel.spec} channel, {s.csi.spec} CSI, "
              f"slot {s.slot}, SNR {s.snr_def}, seed {result.seed}")
    rows = [[name, f"{p.snr_db:.2f}", f"{p.ser:.3e}", _ci(p.ser_ci), f"{p.ber:.3e}",
             _ci(p.ber_ci), f"{p.symbols:d}", f"{p.errors:d}"]
            for name, points in result.curves.items() for p in points]
    table = text_table(rows, ["detector", "SNR[dB]", "SER", "SER 95% CI", "BER", "BER 95% CI",
                              "symbols", "errors"], right={1, 2, 4, 6, 7}, rule=True)
    return header + "\n" + table


# -- the command -------------------------------------------------------------------

def resolve_detectors(args: argparse.Namespace) -> str:
    """The detector list: ``--detector`` entries, then positional ARTIFACT_DIRs; and the
    sizes (--nt/--nr/--mod) not given, from the first model or artifact in it."""
    for path in args.artifacts:
        if not _is_artifact(path):
            raise UsageError(f"{path!r} is not a compiled artifact directory (no manifest.json "
                             "or schedule.json); compile one with 'mimoc compile MODEL.pt -o "
                             "DIR'")
    given = [args.detector] if args.detector is not None else ([] if args.artifacts
                                                                 else ["mmse"])
    spec = ",".join(given + list(args.artifacts))
    if None in (args.nt, args.nr, args.mod, args.system):
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        sizes = model_sizes(entries) or {"nt": 4, "nr": 8, "mod": "qpsk", "system": "complex"}
        if args.system == "real" and args.mod is None and sizes["mod"] not in PAM_MODULATIONS:
            sizes["mod"] = "bpsk"  # the real system's default modulation
        for key, value in sizes.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    return spec


# -- resource sizes --------------------------------------------------------------

def write_curves_csv(result: BERResult, path: str | os.PathLike) -> Path:
    """Write ``result``'s curves as CSV (:data:`CSV_COLUMNS`) atomically; returns the path.

    Floats go through ``repr`` (the csv module's default), so they read back as exactly the
    numbers of ``--json``.
    """
    import csv
    import io

    from mimoc.fileio import atomic_write

    bits_per_symbol = get_constellation(result.system.modulation).bits_per_symbol
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, points in result.curves.items():
        for p in points:
            writer.writerow([name, p.snr_db, p.symbols, p.errors, p.ser, *p.ser_ci,
                             p.symbols * bits_per_symbol, p.bit_errors, p.ber, *p.ber_ci,
                             p.slots, p.effective_symbols])
    with atomic_write(path) as handle:
        handle.write(text.getvalue().encode())
    return Path(path)


def run(args: argparse.Namespace) -> int:
    channel = parse_channel(args.channel)
    if hasattr(channel, "check_sizes"):  # a channel file fixes the sizes not given
        args.nr, args.nt = args.nr or channel.nr, args.nt or channel.nt
    spec = resolve_detectors(args)
    for flag in ("nt", "nr", "slot", "max_symbols", "min_errors", "threads"):
        _positive_int("--" + flag.replace("_", "-"), getattr(args, flag))
    for flag in ("batch", "min_error_slots"):
        if getattr(args, flag) is not None:
            _positive_int("--" + flag.replace("_", "-"), getattr(args, flag))
    check_sizes(args.nt, args.nr, args.slot, args.batch, args.max_symbols)
    snrs = parse_snr_list(args.snr)
    wants_ray(args)  # a bad --workers fails before any work
    system = MIMOSystem(nt=args.nt, nr=args.nr, modulation=get_constellation(args.mod).name,
                        channel=channel, csi=CSIModel.parse(args.csi),
                        snr_def=args.snr_def, slot=args.slot, system=args.system or "complex")
    if system.real and args.output == "llr":
        raise UsageError("--output llr is for complex systems; a real system gives hard "
                         "decisions (drop --output llr or --system real)")
    if args.metric is not None and not args.plot:
        raise UsageError("--metric chooses what --plot draws: add --plot FILE (the table, "
                         "--json and --csv carry both SER and BER)")
    if args.plot:
        from mimoc.studies.plots import check_plot_path

        check_plot_path(args.plot)
    for path, what in ((args.csv, "CSV"), (args.save_llr, "LLR")):
        if path:
            from mimoc.studies.plots import check_writable_file

            check_writable_file(path, what)

    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    parallel = contextlib.ExitStack()
    try:
        detectors = build_detectors(spec, system, args.c2c, args.seed,
                                    verify=verify_artifacts(args),
                                    time_s=getattr(args, "time_since_programming", None))
        _dry_run(detectors, system, snrs[0])
        executor = parallel.enter_context(ray_executor(args, spec, system, args.seed,
                                                       verify_artifacts(args)))
        recorder = llr_recorder(args, len(detectors), len(snrs), system)
        result = simulate(detectors, system, snrs, seed=args.seed, max_symbols=args.max_symbols,
                          min_errors=args.min_errors, min_error_slots=args.min_error_slots,
                          batch_size=args.batch, llr=args.output == "llr",
                          on_llr=recorder,
                          progress=not args.no_progress, executor=executor)
    finally:
        torch.set_num_threads(previous_threads)
        parallel.close()  # stops a Ray this run started

    if args.plot:
        from mimoc.studies.plots import plot_error_rates

        with one_line_on_write_error("plot", args.plot):
            plot_error_rates(result, args.plot, metric=args.metric or "ber")
    if args.csv:
        with one_line_on_write_error("CSV", args.csv):
            write_curves_csv(result, args.csv)
    if recorder is not None:
        write_llrs(recorder, args.save_llr)
    if args.json:
        from mimoc.commands.json_output import print_json

        result.identities = detector_identities(spec, args.c2c)
        print_json(NAME, args, result.to_dict())
    else:
        print(format_table(result))
        for name, points in (result.curves.items() if result.llr else ()):
            print(f"GMI {name}: " + ", ".join(f"{p.snr_db:g} dB {p.gmi:.3f}" for p in points)
                  + " bits per channel use")
        if args.plot:
            print(f"plot written to {args.plot}")
        if args.csv:
            print(f"CSV written to {args.csv}")
    sys.stdout.flush()
    return 0
