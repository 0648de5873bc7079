"""Plots in PNG, PDF and SVG with reproducible bytes, SER and two-panel plots, legends outside
the axes, and ``mimoc ber --csv`` holding the ``--json`` numbers."""

from __future__ import annotations

import csv

import pytest
from json_docs import curves_by_name, parse_output

from mimoc.cli import main
from mimoc.commands.ber import CSV_COLUMNS
from mimoc.errors import UsageError
from mimoc.sim.ber import BERPoint, BERResult
from mimoc.sim.system import MIMOSystem
from mimoc.studies.plots import check_plot_path, draw_error_rates, plot_error_rates

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-", "svg": b"<?xml"}
FAST = ["--max-symbols", "2000", "--no-progress"]


def _result(curves: int = 1) -> BERResult:
    """Hand-made curves whose SER and BER differ (half as many bit errors as symbol
    errors), each with one point that has no error at all."""
    def points(shift: int) -> list[BERPoint]:
        return [BERPoint.from_counts(snr, 100_000, errors, errors // 2, 2)
                for snr, errors in [(0, 5000 + shift), (5, 40 + shift), (10, 0)]]

    return BERResult(MIMOSystem(nt=2, nr=4),
                     {f"detector number {i}": points(10 * i) for i in range(curves)})


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_each_format_has_its_magic_bytes_and_is_reproducible(tmp_path, fmt):
    first = plot_error_rates(_result(2), tmp_path / f"a.{fmt}", metric="both").read_bytes()
    second = plot_error_rates(_result(2), tmp_path / f"b.{fmt}", metric="both").read_bytes()
    assert first.startswith(MAGIC[fmt])
    assert first == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"a.{fmt}", f"b.{fmt}"]


def test_upper_case_extension_is_accepted(tmp_path):
    assert plot_error_rates(_result(), tmp_path / "FIG.PDF").read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize("name", ["ber.jpg", "ber", "ber.eps"])
def test_unknown_extension_is_one_line_naming_the_three(tmp_path, name):
    with pytest.raises(UsageError) as err:
        check_plot_path(tmp_path / name)
    message = str(err.value)
    assert "\n" not in message and ".png, .pdf, .svg" in message
    assert not (tmp_path / name).exists()


def test_ber_cli_refuses_a_bad_plot_extension_before_simulating(capsys, tmp_path):
    code, out, err = _cli(capsys, "ber", *FAST, "--plot", str(tmp_path / "ber.tiff"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert ".png, .pdf, .svg" in err


@pytest.mark.parametrize("metric", ["ber", "ser"])
def test_metric_picks_the_plotted_rates(metric):
    result = _result()
    fig = draw_error_rates(result, metric)
    (ax,) = fig.axes
    points = result.curves["detector number 0"]
    expected = [getattr(p, metric) for p in points if getattr(p, metric) > 0]
    assert list(ax.lines[0].get_ydata()) == expected
    assert metric.upper() in ax.get_ylabel()
    # the point without errors sits at its interval's upper end
    zero = [p for p in points if getattr(p, metric) == 0]
    (unseen,) = [line for line in ax.lines if line.get_marker() == "v" and len(line.get_xdata())]
    assert list(unseen.get_ydata()) == [getattr(p, f"{metric}_ci")[1] for p in zero]


def test_both_draws_ber_left_and_ser_right():
    fig = draw_error_rates(_result(), "both")
    ber_ax, ser_ax = fig.axes
    assert "BER" in ber_ax.get_ylabel() and "SER" in ser_ax.get_ylabel()
    assert list(ber_ax.lines[0].get_ydata()) != list(ser_ax.lines[0].get_ydata())


def test_unknown_metric_is_refused(tmp_path):
    with pytest.raises(UsageError, match="ber, ser or both"):
        plot_error_rates(_result(), tmp_path / "x.png", metric="fer")


@pytest.mark.parametrize("metric", ["ber", "both"])
def test_legend_lies_outside_every_axes(metric):
    fig = draw_error_rates(_result(6), metric)  # many curves: the crossbar C2C case
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
    assert fig.bbox.contains(box.x1 - 1, box.y0 + 1)  # and inside the figure


def test_ber_cli_writes_svg_of_ser_and_csv_equal_to_json(capsys, tmp_path):
    plot, table = tmp_path / "ser.svg", tmp_path / "curves.csv"
    code, out, _ = _cli(capsys, "ber", "--detector", "zf,mmse", "--snr", "0,6", *FAST,
                        "--plot", str(plot), "--metric", "ser", "--csv", str(table), "--json")
    assert code == 0
    assert plot.read_bytes().startswith(MAGIC["svg"])
    data = parse_output("ber", out)
    with table.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    expected = []
    for name, points in curves_by_name(data).items():
        for p in points:
            expected.append([name, p["snr_db"], p["symbols"], p["errors"], p["ser"],
                             *p["ser_ci"], p["symbols"] * 2, p["bit_errors"], p["ber"],
                             *p["ber_ci"], p["slots"], p["effective_symbols"]])
    assert len(rows) == 1 + 4
    for row, want in zip(rows[1:], expected, strict=True):
        assert row[0] == want[0]
        assert [float(v) for v in row[1:]] == [float(v) for v in want[1:]]
        assert float(row[9]) == int(row[8]) / int(row[7])  # ber = bit_errors / bits
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.csv", "ser.svg"]


def test_ber_cli_refuses_an_unwritable_csv_before_simulating(capsys, tmp_path):
    code, out, err = _cli(capsys, "ber", *FAST, "--csv", str(tmp_path / "no" / "x.csv"))
    assert code == 2 and out == "" and err.count("\n") == 1 and "does not exist" in err
    code, _, err = _cli(capsys, "ber", *FAST, "--csv", str(tmp_path))
    assert code == 2 and "is a directory" in err


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_budget_cli_writes_a_reproducible_chart_in_each_format(capsys, tmp_path, fmt):
    import torch

    from mimoc.detectors import build_detector, save_detector

    torch.manual_seed(0)
    model = build_detector("detnet", nt=2, nr=4, modulation="qpsk", layers=2, hidden=16,
                           v_dim=4).eval()
    checkpoint = save_detector(model, tmp_path / "detnet.pt")
    charts = [tmp_path / f"budget{i}.{fmt}" for i in range(2)]
    for chart in charts:
        code, out, err = _cli(capsys, "budget", str(checkpoint), "--targets", "dsp-c6678",
                              "--ser-symbols", "0", "--no-progress", "--plot", str(chart))
        assert code == 0, err
        assert f"plot written to {chart}" in out
    assert charts[0].read_bytes().startswith(MAGIC[fmt])
    assert charts[0].read_bytes() == charts[1].read_bytes()
