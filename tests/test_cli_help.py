"""Help output reads like the README: usage lines name arguments as the
README does, and no Python type leaks into the help of any command."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

USAGE = {
    ("fuse",): "Usage: hdrmerge fuse [OPTIONS] IN1 IN2 IN3",
    ("batch",): "Usage: hdrmerge batch [OPTIONS] FOLDER",
    ("eval",): "Usage: hdrmerge eval [OPTIONS] DATASET",
    ("synth",): "Usage: hdrmerge synth [OPTIONS] HDR_DIR OUT_DIR",
    ("finetune",): "Usage: hdrmerge finetune [OPTIONS] FOLDER...",
    ("weights", "list"): "Usage: hdrmerge weights list [OPTIONS]",
    ("weights", "download"): "Usage: hdrmerge weights download [OPTIONS] NAME",
    ("weights", "install"): "Usage: hdrmerge weights install [OPTIONS] NAME PATH",
    ("weights", "verify"): "Usage: hdrmerge weights verify [OPTIONS] [NAME]...",
    ("weights", "remove"): "Usage: hdrmerge weights remove [OPTIONS] NAME",
}


@pytest.mark.parametrize("command", list(USAGE), ids=" ".join)
def test_usage_line_and_help_read_like_the_readme(command):
    r = run_cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == USAGE[command]
    for leak in ("<list[", "<str>", "<path>", "<int>", "<float>", "<file>", "<directory>"):
        assert leak not in r.stdout, (leak, r.stdout)


def test_fuse_help_names_option_values_as_the_readme():
    out = run_cli("fuse", "--help").stdout
    for shown in ("-o, --output PATH", "--ev A,B,C", "-m, --model NAME", "--weights PATH", "--flow-scale S|auto",
                  "--tile N", "--max-memory SIZE", "--max-pixels N", "--preview PATH", "--debug-dir DIR"):
        assert shown in out, shown


def test_batch_json_help_says_json_lines():
    out = " ".join(run_cli("batch", "--help").stdout.split())
    assert "--json JSON lines on stdout instead of tables: one object per bracket, then a summary line." in out
