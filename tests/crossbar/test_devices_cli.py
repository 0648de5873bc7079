"""``mimoc devices``: the listing, one profile in full, a user file, a bad profile."""

from __future__ import annotations

import argparse
import json

import pytest
from json_docs import parse_output

from mimoc.commands import devices as command
from mimoc.errors import MimocError
from mimoc.hardware.devices import list_devices, load_device


def run(argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def test_listing_names_every_shipped_device(capsys):
    assert run([]) == 0
    out = capsys.readouterr().out
    for name in list_devices():
        assert name in out
    assert "630 ps" in out and "4.41% / 5.44%" in out


def test_listing_as_json(capsys):
    assert run(["--json"]) == 0
    profiles = parse_output("devices", capsys.readouterr().out)["devices"]
    assert [p["name"] for p in profiles] == list(list_devices())
    assert profiles[0] == load_device(profiles[0]["name"]).to_dict()


def test_one_device_in_full(capsys):
    assert run(["rram-zeng2023"]) == 0
    out = capsys.readouterr().out
    assert "10 ns" in out and "256 states" in out and "write-verify" in out
    assert "Zeng" in out


def test_user_profile_and_bad_profile(tmp_path, capsys):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(load_device("ftj-luo2022").to_dict() | {"name": "mine"}))
    assert run([str(good), "--json"]) == 0
    (profile,) = parse_output("devices", capsys.readouterr().out)["devices"]
    assert profile["name"] == "mine"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(load_device("ftj-luo2022").to_dict() | {"states": 0}))
    with pytest.raises(MimocError, match="states"):
        run([str(bad)])


def test_registered_in_the_cli(capsys):
    from mimoc.cli import main

    assert main(["devices", "ftj-luo2022", "--json"]) == 0
    data = parse_output("devices", capsys.readouterr().out)
    assert data["command"] == ["mimoc", "devices", "ftj-luo2022", "--json"]
    assert data["devices"][0]["states"] == 150
    assert main(["devices", "no-such-device"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown device 'no-such-device'" in err
