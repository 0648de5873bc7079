"""One vocabulary (mimoc/commands/flags.py, docs/cli.md): every shared concept has the same
flag, grammar and default in every command; negative lists are values; deprecated
spellings work and warn once; every ``-o`` refuses an existing output without ``--force``
and never replaces its input; the help texts list what the commands accept."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mimoc import cli
from mimoc.commands import flags
from mimoc.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "detnet", "--nt", "2", "--nr", "4", "--layers", "1", "--hidden", "4",
         "--steps", "1", "--slot", "1", "--batch", "4", "--val-batch", "4", "--no-progress"]


def command_parsers() -> dict[str, list[argparse.ArgumentParser]]:
    """Each command's parser(s): train has one per family."""
    def subparsers(parser):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices

    found = {}
    for name, parser in subparsers(cli.build_parser()).items():
        found[name] = list(subparsers(parser).values()) if name == "train" else [parser]
    return found


def action(parser: argparse.ArgumentParser, flag: str):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- one table ---------------------------------------------------------------------------

def test_every_concept_has_one_flag_metavar_and_its_tabled_default_in_every_command():
    for command, parsers in command_parsers().items():
        for parser in parsers:
            for name, concept in flags.CONCEPTS.items():
                declared = action(parser, concept.flag)
                if command not in flags.concept_commands(name):
                    assert declared is None, f"{command} has {concept.flag} off the table"
                    continue
                assert declared is not None, f"{command} lacks {concept.flag}"
                assert declared.default == concept.default(command), (command, name)
                assert declared.metavar == concept.metavar, (command, name)
                assert f"(default: {concept.shown_default(command)})" in " ".join(
                    declared.help.split()), (command, name)


def test_docs_cli_md_holds_the_table_of_the_code():
    text = (ROOT / "docs" / "cli.md").read_text()
    assert flags.markdown_table() in text  # regenerate: python -m mimoc.commands.flags
    assert "docs/cli.md" in (ROOT / "README.md").read_text()


def test_tabled_defaults_are_the_libraries_own():
    from mimoc.detectors.training import TrainOptions
    from mimoc.sim.ber import DEFAULT_MAX_SYMBOLS
    from mimoc.studies.budget import DEFAULT_SER_SYMBOLS
    from mimoc.studies.report import DEFAULT_C2C
    from mimoc.studies.report import DEFAULT_MAX_SYMBOLS as REPORT_SYMBOLS
    from mimoc.targets.crossbar.config import CrossbarConfig

    symbols = flags.CONCEPTS["max-symbols"]
    assert (symbols.default("ber"), symbols.default("report"), symbols.default("budget")) == \
        (DEFAULT_MAX_SYMBOLS, REPORT_SYMBOLS, DEFAULT_SER_SYMBOLS)
    assert flags.parse_number_list(flags.CONCEPTS["c2c"].default("report"), "--c2c",
                                   sort=False) == list(DEFAULT_C2C)
    lo, hi = TrainOptions().snr_db
    assert flags.CONCEPTS["snr-train"].default("train") == f"{lo:g}:{hi:g}"
    config = CrossbarConfig()  # compile passes --slot/--array only when given
    assert config.slot == flags.CONCEPTS["slot"].default("compile")
    assert "x".join(map(str, config.array)) == flags.CONCEPTS["array"].default("compile")


# -- the value grammar -------------------------------------------------------------------

@pytest.mark.parametrize("command", [["ber"], ["report", "m.pt", "-o", "r"], ["budget", "m.pt"]])
@pytest.mark.parametrize("form", [["--snr", "-4:2:10"], ["--snr=-4:2:10"]])
def test_negative_snr_lists_are_values_in_both_forms(command, form):
    args = cli.build_parser().parse_args(command + form)
    assert args.snr == "-4:2:10"
    assert flags.parse_number_list(args.snr, "--snr") == [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0,
                                                          8.0, 10.0]


def test_negative_values_reach_every_subparser():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "detnet", "--snr-train", "-5:10", "-o", "m.pt"])
    assert args.snr_train == "-5:10"
    assert parser.parse_args(["budget", "m.pt", "--snr", "-2.5"]).snr == "-2.5"
    assert parser.parse_args(["ber", "--snr", "-1e-1,.5"]).snr == "-1e-1,.5"


def test_ber_runs_a_negative_range(capsys):
    code, out, err = run(capsys, "ber", "--snr", "-4:2:-2", "--nt", "2", "--nr", "4",
                         "--max-symbols", "500", "--no-progress")
    assert code == 0, err
    assert "slot 14" in out and " -4.00 " in out and " -2.00 " in out


def test_budget_takes_one_snr_and_refuses_a_list_in_one_line(capsys):
    code, _, err = run(capsys, "budget", "missing.pt", "--snr", "0,2")
    assert code == 2 and err.count("\n") == 1 and "--snr takes one value" in err


@pytest.mark.parametrize("text, expected", [("0:0.01:0.02", [0.0, 0.01, 0.02]),
                                            ("0.04,0", [0.04, 0.0])])
def test_c2c_uses_the_same_grammar_in_the_given_order(text, expected):
    from mimoc.commands.ber_artifacts import parse_c2c_list

    assert parse_c2c_list(text) == expected


def test_train_takes_one_c2c_level(capsys):
    code, _, err = run(capsys, *TRAIN, "--c2c", "0,0.02", "-o", "never.pt")
    assert code == 2 and err.count("\n") == 1 and "--c2c takes one value" in err


# -- deprecated aliases --------------------------------------------------------------------

@pytest.mark.parametrize("argv, dest, value, old, new", [
    (["ber", "--batch-size", "5"], "batch", 5, "--batch-size", "--batch"),
    (["bench", "x", "--batches", "1,8"], "batch", "1,8", "--batches", "--batch"),
    (["budget", "m.pt", "--ser-symbols", "0"], "max_symbols", 0, "--ser-symbols",
     "--max-symbols"),
    (["budget", "m.pt", "--targets", "onnx"], "target", "onnx", "--targets", "--target"),
    (["report", "m.pt", "-o", "r", "--targets", "mmse"], "target", "mmse", "--targets",
     "--target"),
])
def test_deprecated_spellings_work_and_warn_once(capsys, argv, dest, value, old, new):
    args = cli.build_parser().parse_args(argv + argv[-2:])  # given twice: one warning
    assert getattr(args, dest) == value
    assert capsys.readouterr().err == f"mimoc: {old} is deprecated; use {new}\n"


def test_deprecated_target_names_warn_and_mean_the_new_ones(capsys):
    from mimoc.studies.budget.target_names import parse_targets

    flags.warn_deprecated_targets(argparse.Namespace(), "onnx-cpu,onnx-cpu-w4:kaq,mmse")
    assert capsys.readouterr().err.splitlines() == [
        "mimoc: target onnx-cpu is deprecated; use onnx",
        "mimoc: target onnx-cpu-w4:kaq is deprecated; use onnx-w4:kaq"]
    old, new = parse_targets("onnx-cpu-w4:kaq"), parse_targets("onnx-w4:kaq")
    assert old == new and new[0].name == "onnx-w4:kaq" and new[0].lowering == "w4"


def test_a_deprecated_flag_warns_on_stderr_and_leaves_json_clean(capsys):
    import json

    code, out, err = run(capsys, "ber", "--nt", "2", "--nr", "4", "--snr", "10",
                         "--max-symbols", "200", "--batch-size", "4", "--json",
                         "--no-progress")
    assert code == 0 and json.loads(out)["slot_symbols"] == 14
    assert err == "mimoc: --batch-size is deprecated; use --batch\n"


# -- compile --target NAME -------------------------------------------------------------------

@pytest.mark.parametrize("name, given, target, merged", [
    ("onnx", {}, "onnx", {}),
    ("onnx-w4:minmax", {}, "onnx", {"lowering": "w4", "quant": "minmax"}),
    ("onnx-int8", {"quant": "int8"}, "onnx", {"lowering": "int8", "quant": "int8"}),
    ("onnx-cpu-w4a4", {}, "onnx", {"lowering": "w4a4"}),
    ("crossbar:rram-zeng2023", {}, "crossbar", {"device": "rram-zeng2023"}),
    ("crossbar", {}, "crossbar", {}),
])
def test_compile_target_shorthands(name, given, target, merged):
    from mimoc.commands.compile import resolve_target

    options = dict(given)
    assert resolve_target(name, options) == target
    assert {k: v for k, v in options.items() if v is not None} == merged


@pytest.mark.parametrize("name, given, message", [
    ("onnx-w4:minmax", {"quant": "kaq"}, "drop one of them"),
    ("onnx,crossbar", {}, "one target"),
    ("dsp-c6678", {}, "not a compile target"),
    ("mmse", {}, "not a compile target"),
])
def test_compile_target_refusals(name, given, message):
    from mimoc.commands.compile import resolve_target

    with pytest.raises(UsageError, match=message):
        resolve_target(name, dict(given))


# -- -o: --force, never the input -------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("flags") / "m.pt"
    assert cli.main([*TRAIN, "-o", str(path)]) == 0
    return path


def test_train_refuses_an_existing_output_without_force(capsys, tmp_path, checkpoint):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    code, _, err = run(capsys, *TRAIN, "-o", out)
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert out.read_bytes() == b"keep me"
    code, _, err = run(capsys, *TRAIN, "-o", out, "--force")
    assert code == 0, err
    assert out.read_bytes() != b"keep me"


def test_quantize_refuses_an_existing_output_without_force(capsys, tmp_path, checkpoint):
    out = tmp_path / "q.pt"
    out.write_bytes(b"keep me")
    argv = ["quantize", checkpoint, "--method", "minmax", "--no-progress", "-o", out]
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert out.read_bytes() == b"keep me"
    code, _, err = run(capsys, *argv, "--force")
    assert code == 0, err


def test_force_never_replaces_the_input(capsys, tmp_path, checkpoint):
    model = tmp_path / "m.pt"
    model.write_bytes(checkpoint.read_bytes())
    link = tmp_path / "link.pt"
    link.symlink_to(model)
    code, _, err = run(capsys, "quantize", model, "--method", "minmax", "-o", link, "--force")
    assert code == 2 and "is the input model" in err
    code, _, err = run(capsys, "compile", model, "-o", tmp_path, "--force")
    assert code == 2 and "holds the input model" in err
    code, _, err = run(capsys, "report", model, "-o", tmp_path, "--force")
    assert code == 2 and "holds the input model" in err
    assert model.read_bytes() == checkpoint.read_bytes()


# -- help -------------------------------------------------------------------------------------

def test_help_texts_list_what_the_commands_accept(capsys):
    from mimoc.sim.detectors import detector_specs
    from mimoc.targets import TARGETS, get_target

    def help_of(*argv):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        return " ".join(capsys.readouterr().out.split())

    ber = help_of("ber")
    assert "kbest[:K]" in ber and "amp[:T]" in ber
    assert all(spec in ber for spec in detector_specs())
    compile_help = help_of("compile").replace("- ", "-")  # argparse wraps at hyphens
    for name in TARGETS:
        assert f"{name}: {','.join(get_target(name).default_passes)}" in compile_help
    assert "ONNX-only" not in compile_help and "memristor-crossbar schedule" in compile_help
    detnet = help_of("train", "detnet")
    assert "module docstring" not in detnet and "unfolded projected gradient" in detnet


def test_mimoc_help_imports_no_heavy_module():
    code = ("import sys\nfrom mimoc.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'brevitas', 'onnx') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
