"""``mimoc ber``: output formats, SNR list parsing, plots and bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest
from json_docs import curves_by_name, parse_output

from mimoc.cli import main
from mimoc.commands.ber import parse_snr_list
from mimoc.detectors import build_detector, save_detector
from mimoc.errors import UsageError

FAST = ["--max-symbols", "2000", "--no-progress"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


# -- --snr ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("0,2,4", [0.0, 2.0, 4.0]),
    ("0:2:10", [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]),
    ("0:3:10", [0.0, 3.0, 6.0, 9.0]),          # the end is included only when reached
    ("10:-5:0", [0.0, 5.0, 10.0]),             # sorted
    ("0:0.1:0.3", [0.0, 0.1, 0.2, 0.3]),       # no 0.30000000000000004
    ("-4:2:0, 7", [-4.0, -2.0, 0.0, 7.0]),
    ("5", [5.0]),
    ("-0", [0.0]),
    ("0:2", [0.0, 1.0, 2.0]),                  # START:STOP, step 1
    ("-2:0", [-2.0, -1.0, 0.0]),
])
def test_parse_snr_list(text, expected):
    assert parse_snr_list(text) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "a", "2:0", "0:1:2:3", "0:0:5", "0:-1:5", "1,1",
                                  "0:1:3,2", "nan", "inf", "0:0.001:100"])
def test_parse_snr_list_rejects(text):
    with pytest.raises(UsageError):
        parse_snr_list(text)


# -- output ----------------------------------------------------------------------

POINT_KEYS = {"snr_db", "ser", "ber", "ser_ci", "ber_ci", "symbols", "errors", "bit_errors",
              "slots", "error_slots", "effective_symbols", "effective_bits"}


def test_json_single_detector_shape(capsys):
    code, out, err = run_cli(capsys, "ber", "--detector", "mmse", "--nt", "2", "--nr", "4",
                             "--mod", "qpsk", "--snr", "0:5:10", "--json", *FAST)
    assert code == 0, err
    data = parse_output("ber", out)  # exactly one JSON document on stdout, as its schema says
    assert data["schema"] == "mimoc-ber/1" and data["command"][:2] == ["mimoc", "ber"]
    assert (data["nt"], data["nr"], data["modulation"], data["snr_def"]) == \
        (2, 4, "qpsk", "per-stream")
    (curve,) = data["curves"]  # one detector: still a list of curves
    assert curve["detector"] == {"name": "mmse", "kind": "classical", "spec": "mmse"}
    points = curve["points"]
    assert [p["snr_db"] for p in points] == [0.0, 5.0, 10.0]
    for p in points:
        assert POINT_KEYS <= set(p)
        assert p["ser_ci"][0] <= p["ser"] <= p["ser_ci"][1]
        assert p["ber_ci"][0] <= p["ber"] <= p["ber_ci"][1]
        assert p["symbols"] >= 2000 and p["ser"] == p["errors"] / p["symbols"]
    assert points[0]["ser"] > points[-1]["ser"]


def test_json_several_detectors_share_draws(capsys):
    code, out, err = run_cli(capsys, "ber", "--detector", "zf,mmse", "--nt", "2", "--nr", "2",
                             "--snr", "4,8", "--json", "--channel", "kronecker:0.5",
                             "--snr-def", "per-rx", "--slot", "3", *FAST)
    assert code == 0, err
    data = parse_output("ber", out)
    curves = curves_by_name(data)
    assert list(curves) == ["zf", "mmse"]
    assert (data["channel"], data["slot_symbols"], data["snr_def"]) == \
        ("kronecker:0.5", 3, "per-rx")
    zf, mmse = curves["zf"], curves["mmse"]
    assert [p["symbols"] for p in zf] == [p["symbols"] for p in mmse]


def test_table_output_and_plot(capsys, tmp_path):
    target = tmp_path / "ber.png"
    code, out, err = run_cli(capsys, "ber", "--detector", "zf,mmse", "--nt", "2", "--nr", "4",
                             "--snr", "0,6", "--plot", str(target), *FAST)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("2x4 qpsk, rayleigh channel, perfect CSI")
    assert "SER 95% CI" in lines[1]
    assert sum(line.startswith(("zf ", "mmse ")) for line in lines) == 4
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ber.png"]  # no temporary file left


def test_help_explains_snr_conventions(capsys):
    code, out, _ = run_cli(capsys, "ber", "--help")
    assert code == 0
    for text in ("N0 = 1/rho", "N0 = Nt/SNR", "tr(H_r^T H_r)", "--max-symbols", "curves",
                 "START:STEP:STOP"):
        assert text in out


# -- bad input -----------------------------------------------------------------

BAD_INPUT = [
    (["--detector", "foo"], "unknown detector"),
    (["--detector", "zf,,mmse"], "empty entry"),
    (["--detector", "zf,zf"], "more than once"),
    (["--detector", "missing-model.pt"], "not found"),
    (["--mod", "8psk"], "unknown modulation"),
    (["--detector", "zf", "--nt", "9", "--nr", "8"], "Nt <= Nr"),
    (["--nt", "-1"], "--nt must be a positive integer"),
    (["--nr", "0"], "--nr must be a positive integer"),
    (["--slot", "0"], "--slot must be a positive integer"),
    (["--max-symbols", "-5"], "--max-symbols"),
    (["--min-errors", "0"], "--min-errors"),
    (["--threads", "0"], "--threads"),
    (["--nt", "two"], "invalid int value"),
    (["--snr", "1,,2"], "malformed --snr"),
    (["--snr", "0:1:2:3"], "START:STEP:STOP"),
    (["--snr", "0:-2:10"], "never reaches"),
    (["--snr", "x"], "not a number"),
    (["--snr-def", "snr"], "invalid choice"),
    (["--channel", "kronecker:2"], "kronecker"),
    (["--channel", "ricean"], "unknown channel"),
    (["--csi", "ls:x"], "malformed CSI"),
    (["--plot", "/nonexistent-dir/ber.png"], "does not exist"),
    (["--plot", "ber.jpg"], "must end in .png"),
    (["--metric", "ser"], "--metric chooses what --plot draws"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, "ber", *FAST, *args)  # args win over FAST
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mimoc: error:"), err
    assert message in err


def test_plot_into_a_directory_is_refused(capsys, tmp_path):
    folder = tmp_path / "figure.png"
    folder.mkdir()
    code, _, err = run_cli(capsys, "ber", "--plot", str(folder), *FAST)
    assert code == 2 and "is a directory" in err and err.count("\n") == 1


def test_real_process_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "mimoc", "ber", "--detector", "zf", "--nt", "5",
                           "--nr", "4"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mimoc: error: ZF needs Nt <= Nr"), lines


# -- trained models ----------------------------------------------------------------

@pytest.fixture
def detnet_file(tmp_path):
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk")
    path = tmp_path / "detnet.pt"
    save_detector(model, path)
    return path


def test_model_file_runs_next_to_classical_detectors(capsys, detnet_file):
    code, out, err = run_cli(capsys, "ber", *FAST, "--detector", f"zf,{detnet_file}",
                             "--nt", "2", "--nr", "4", "--snr", "10", "--json")
    assert code == 0, err
    data = parse_output("ber", out)
    assert data["curves"][1]["detector"] == {"name": str(detnet_file), "kind": "model",
                                             "spec": str(detnet_file), "path": str(detnet_file)}
    curves = curves_by_name(data)
    assert list(curves) == ["zf", str(detnet_file)]
    assert curves["zf"][0]["symbols"] == curves[str(detnet_file)][0]["symbols"]


def test_model_file_for_other_sizes_is_refused(capsys, detnet_file):
    code, _, err = run_cli(capsys, "ber", *FAST, "--detector", str(detnet_file), "--nt", "3",
                           "--nr", "4")
    assert code == 2 and err.count("\n") == 1
    assert "built for Nt=2, Nr=4, qpsk" in err and "--nt 2 --nr 4 --mod qpsk" in err


def test_a_file_that_is_not_a_checkpoint_is_refused(capsys, tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    code, out, err = run_cli(capsys, "ber", *FAST, "--detector", str(bogus))
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("mimoc: error:")


# -- plots and progress --------------------------------------------------------------

def _hand_made_result():
    from mimoc.sim.ber import BERPoint, BERResult
    from mimoc.sim.system import MIMOSystem

    points = [BERPoint.from_counts(snr, 100_000, errors, errors, 2)
              for snr, errors in [(0, 5000), (5, 40), (10, 0)]]
    return BERResult(MIMOSystem(nt=2, nr=4), {"zf": points})


def test_plot_draws_zero_error_points_and_leaves_no_temporary_file(tmp_path):
    from mimoc.studies.plots import plot_error_rates

    target = plot_error_rates(_hand_made_result(), tmp_path / "zero.png", metric="ser")
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["zero.png"]


def test_failed_plot_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from mimoc.studies.plots import plot_error_rates

    def broken_savefig(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError):
        plot_error_rates(_hand_made_result(), tmp_path / "ber.png")
    assert list(tmp_path.iterdir()) == []


def test_progress_is_silent_unless_stderr_is_a_terminal(capsys, monkeypatch):
    import mimoc.progress as progress
    from mimoc.sim.ber import classical, simulate
    from mimoc.sim.system import MIMOSystem

    system = MIMOSystem(nt=2, nr=2)
    simulate({"zf": classical("zf", system.constellation)}, system, [0.0], max_symbols=500,
             progress=True)
    assert capsys.readouterr().err == ""
    with progress.progress_bar(10) as bar:
        assert bar.disable
    monkeypatch.setattr(progress, "is_interactive", lambda stream=None: True)
    with progress.progress_bar(10) as bar:
        assert not bar.disable
    with progress.progress_bar(10, enabled=False) as bar:
        assert bar.disable


def test_a_write_error_is_one_line_naming_the_file():
    from mimoc.commands.writing import one_line_on_write_error
    from mimoc.errors import MimocError

    with pytest.raises(MimocError, match=r"^cannot write plot 'x\.png': No space left on "
                                         r"device; choose another path$"):
        with one_line_on_write_error("plot", "x.png"):
            raise OSError(28, "No space left on device")
    with one_line_on_write_error("CSV", "x.csv"):  # no error: nothing happens
        pass
