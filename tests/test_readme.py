"""Docs test: every command in README.md runs as written, so the README cannot drift.

The commands are the lines of the README's ```sh blocks (a trailing backslash continues a
line), run in order with ``bash`` in one temporary directory -- later commands use what
earlier ones wrote (``mimoc train ... -o detnet_4x8.pt``, then ``mimoc inspect
detnet_4x8.pt``) -- with the repository's ``examples/`` linked in, as in a checkout. The
README's install prefix ``pip install torch==2.13.0 -e . &&`` is dropped (the test runs in
the installed package); a command listed in :data:`NOT_RUN` is not run, with the reason.
Every command is marked ``slow`` (a later one needs the earlier ones, which train and
compile): the default ``pytest -q`` leaves them out, ``pytest -q -m "slow or not slow"``
runs them. Besides its exit status, a command's ``--json`` output is parsed and checked,
its ``--plot`` file must be an image and its ``-o`` output must exist.

The README's example outputs are checked against the current code where they are exact:
the main job's budget table has the header and target rows that ``mimoc budget`` prints
now, and the figures it shows exist (``scripts/regenerate_readme_figures.py`` remakes
them and the main job's output).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from json_docs import curves_by_name

from mimoc.commands.ber import parse_snr_list
from mimoc.validation import validate_output

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
INSTALL_PREFIX = re.compile(r"^pip install [^&]*&&\s*")
#: Commands not run by this test, with the reason (the test fails if the README stops
#: having them, so the list cannot go stale).
NOT_RUN = {
    "pip install torch==2.13.0 -e '.[test]' && pytest -q":
        "installs the test extras and runs the fast tests",
    'pytest -q -m "slow or not slow"': "runs the whole test suite, this file included",
}
TIMEOUT_S = 600
#: The first bytes of each ``--plot`` format.
IMAGE_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF", ".svg": b"<"}


def readme_commands(text: str) -> list[str]:
    """The commands of every ```sh block, continuation lines joined, in README order."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1].rstrip() + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


COMMANDS = readme_commands(README.read_text())


@dataclass
class Session:
    """Runs the README's commands in order, once each, in one directory."""

    cwd: Path
    results: dict[int, subprocess.CompletedProcess] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["MPLBACKEND"] = "Agg"
        return env

    def run_upto(self, index: int) -> subprocess.CompletedProcess:
        for i in range(index + 1):
            if i in self.results or COMMANDS[i] in NOT_RUN:
                continue
            command = INSTALL_PREFIX.sub("", COMMANDS[i])
            self.results[i] = subprocess.run(["bash", "-c", command], cwd=self.cwd,
                                             env=self.env(), capture_output=True, text=True,
                                             timeout=TIMEOUT_S)
        return self.results[index]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    (cwd / "examples").symlink_to(ROOT / "examples")
    yield Session(cwd)
    shutil.rmtree(cwd, ignore_errors=True)


def option(command: str, name: str) -> str | None:
    """The value of ``name VALUE`` or ``name=VALUE`` in ``command``, or None."""
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word[len(name) + 1:]
    return None


def check_json(command: str, stdout: str) -> None:
    words = shlex.split(command, comments=True)
    name = words[words.index("mimoc") + 1]
    data = validate_output(name, json.loads(stdout))  # as the command's shipped schema says
    assert data["schema"].startswith(f"mimoc-{name}/")
    if command.startswith("mimoc ber"):
        curves = curves_by_name(data)
        assert list(curves) == option(command, "--detector").split(","), list(curves)
        snrs = parse_snr_list(option(command, "--snr"))
        for name, points in curves.items():
            assert [p["snr_db"] for p in points] == snrs, name
            assert all(0 <= p["ser"] <= 1 and p["symbols"] > 0 for p in points), name
    else:
        assert isinstance(data, dict) and data, stdout[:200]


def check_outputs(command: str, result: subprocess.CompletedProcess, cwd: Path) -> None:
    """What the command says it writes is there: the ``--json`` it prints, the ``--plot``
    image, the ``-o`` file or directory."""
    if "--json" in shlex.split(command, comments=True):
        check_json(command, result.stdout)
    plot = option(command, "--plot")
    if plot is not None:
        assert (cwd / plot).is_file(), f"{command!r} did not write {plot}"
        magic = IMAGE_MAGIC[Path(plot).suffix]
        assert (cwd / plot).read_bytes()[:len(magic)] == magic, f"{plot} is not an image"
    out = option(command, "-o")
    if out is not None:
        assert (cwd / out).exists(), f"{command!r} did not write {out}"


@pytest.mark.slow  # later commands need the earlier ones, which train and compile: minutes
@pytest.mark.parametrize("index", [pytest.param(i, id=f"{i:02d}-{c[:60]}")
                                   for i, c in enumerate(COMMANDS) if c not in NOT_RUN])
def test_readme_command_runs(session, index):
    result = session.run_upto(index)
    assert result.returncode == 0, (f"README command failed: {COMMANDS[index]}\n"
                                    f"{result.stderr[-2000:]}")
    check_outputs(INSTALL_PREFIX.sub("", COMMANDS[index]), result, session.cwd)


def test_not_run_commands_are_in_the_readme():
    assert set(NOT_RUN) <= set(COMMANDS)


def test_the_main_job_is_the_first_command_and_installs_first():
    first = COMMANDS[0]
    assert INSTALL_PREFIX.match(first) and "mimoc budget examples/models/" in first


def _main_job_output() -> list[str]:
    text = README.read_text()
    match = re.search(r"<!-- main-job-output -->\n```\n(.*?)```\n<!-- /main-job-output -->",
                      text, flags=re.S)
    assert match, "README lacks the main job's output between <!-- main-job-output --> marks"
    return match.group(1).splitlines()


def test_readme_budget_table_has_the_current_format():
    from mimoc.studies.budget import DEFAULT_TARGETS

    lines = _main_job_output()
    header = next(line for line in lines if line.startswith("target "))
    assert header.split()[:4] == ["target", "source", "prep", "us"]
    # the table's rows run from below the dashes to the legend that starts "prep ="
    table = itertools.takewhile(lambda line: not line.startswith("prep ="),
                                lines[lines.index(header) + 2:])
    rows = [line.split()[0] for line in table]
    assert rows == list(DEFAULT_TARGETS)


def test_readme_figures_exist():
    text = README.read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert any("budget" in f for f in figures) and any("ber" in f for f in figures)
    for figure in figures:
        assert (ROOT / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
