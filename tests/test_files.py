"""sparsa.files.read_table: the one reader of the packaged data tables and users' replacements."""

import tomllib
from importlib import resources

import pytest

from sparsa.files import read_table


class TableError(ValueError):
    pass


def test_the_packaged_default_is_the_file_in_the_packages_data_folder():
    values, source = read_table("sparsa.sw", "energy_45nm_horowitz.toml", None, "energy table",
                                TableError)
    text = resources.files("sparsa.sw").joinpath("data", "energy_45nm_horowitz.toml").read_text()
    assert values == tomllib.loads(text)
    assert source == "energy_45nm_horowitz.toml"


def test_a_users_file_is_read_and_named_by_its_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[cells]\nNAND2 = 1.0\n')
    values, source = read_table("sparsa.hw", "unused.toml", path, "gate table", TableError)
    assert values == {"name": "mine", "cells": {"NAND2": 1.0}}
    assert source == str(path)


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read gate table"),                    # no such file
    (b"\xff\xfe not text", "cannot read gate table"),     # not UTF-8
    (b"cells = [", "gate table {path}: malformed TOML"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TableError) as e:
        read_table("sparsa.hw", "unused.toml", path, "gate table", TableError)
    text = str(e.value)
    assert message.format(path=path) in text
    assert str(path) in text
    assert "\n" not in text
