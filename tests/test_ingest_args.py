"""`vmdex ingest`'s own parser (query.ingest_cli.ingest_words, which spares an ingest the Typer
app's 0.15-0.2 s) against the Typer app's: for any command line it takes, the arguments are
the ones the app's parser gives; whatever it leaves to the app (None) the app handles, usage
errors included. Command lines drawn by hypothesis from the options' own words."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmdex.query.ingest_cli import ingest_words

WORDS = ["--vmlinux", "--name", "--to", "--jobs", "-j", "--workers", "-w",
         "--vmlinux-from-dump", "--vmlinux-required", "--", "-", "--help", "-x", "--db",
         "--jobs=3", "--workers=0", "--name=n", "--vmlinux=v", "-j2", "2", "0", "x", "y.core",
         "dir/", "--vmlinux-required=1", "-1", "é"]


def typer_params(argv: list[str]) -> dict | None:
    """What the Typer app's parser makes of `ingest ARGV` (None: it refuses the line)."""
    import typer.main

    from vmdex.query.cli import app

    sub = typer.main.get_command(app).get_command(None, "ingest")
    try:
        return sub.make_context("ingest", list(argv)).params
    except Exception:            # usage errors, --help's exit
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=7))
def test_ingest_words_agree_with_the_app(argv):
    mine = ingest_words(["--db", "i.db", "ingest", *argv])
    if mine is None:
        return                   # the app parses it, as before
    theirs = typer_params(argv)
    assert theirs is not None, argv
    assert mine.pop("db") == "i.db"
    assert mine == {k: (list(v) if k == "dumps" else v) for k, v in theirs.items()}, argv


@pytest.mark.parametrize("argv", [["x"], ["--vmlinux", "v", "--name=n", "-w", "2", "a", "b"],
                                  ["--to", "d", "--jobs", "3", "a", "--", "-b"],
                                  ["--vmlinux-from-dump", "a"]])
def test_plain_lines_take_the_fast_path(argv):
    assert ingest_words(["ingest", *argv]) is not None


@pytest.mark.parametrize("argv", [[], ["--help"], ["--jobs", "0", "a"], ["-j2", "a"],
                                  ["--name", "a", "--name", "b", "c"], ["--bogus", "a"]])
def test_the_rest_goes_to_the_app(argv):
    assert ingest_words(["ingest", *argv]) is None
