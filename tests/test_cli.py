"""The command line: spellings of the original, one-line errors, exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import dmv_fast
from dmv_fast.cli.app import app
from dmv_fast.cli.terminal import expand_multi_value

runner = CliRunner(env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})


def invoke(*args: str):
    return runner.invoke(app, expand_multi_value(list(args)))


@pytest.fixture
def song(make_song):
    return make_song("song.wav", seconds=2.0)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dmv-fast {dmv_fast.__version__}"


def test_classes_take_several_values_like_the_original():
    argv = ["render", "--classes", "45", "99", "goldfish", "--jitter", "0", "--classes", "7"]
    assert expand_multi_value(argv) == [
        "render",
        "--classes", "45",
        "--classes", "99",
        "--classes", "goldfish",
        "--jitter", "0",
        "--classes", "7",
    ]  # fmt: skip


def test_help_lists_both_spellings():
    result = invoke("render", "--help")
    assert result.exit_code == 0
    text = result.stdout
    for spelling in (
        "--pitch_sensitivity",
        "--pitch-sensitivity",
        "--use_previous_vectors",
        "--frame_length",
        "--output_file",
        "--use-disk",
        "--save-only",
    ):
        assert spelling in text, spelling


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pitch_sensitivity", "300"], "pitch_sensitivity"),
        (["--pitch-sensitivity", "0"], "pitch_sensitivity"),
        (["--num_classes", "13"], "num_classes"),
        (["--frame_length", "500"], "frame_length"),
        (["--truncation", "1.5"], "truncation"),
        (["--truncation", "0"], "truncation"),
        (["--depth", "0"], "depth"),
        (["--smooth_factor", "0"], "smooth_factor"),
        (["--classes", "1", "2", "1000", "--num_classes", "3"], "1000"),
        (["--classes", "notaclassname", "--num_classes", "1"], "notaclassname"),
    ],
)
def test_bad_options_fail_in_one_line_before_any_work(song, tmp_path, args, needle):
    out = tmp_path / "out.mp4"
    result = invoke("render", "--song", str(song), "--output_file", str(out), "-q", *args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and needle in lines[0]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [song]  # nothing written


def test_missing_song(tmp_path):
    result = invoke(
        "render",
        "--song",
        str(tmp_path / "nope.mp3"),
        "-q",
        "--output_file",
        str(tmp_path / "o.mp4"),
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "nope.mp3" in result.output


def test_output_folder_missing(song, tmp_path):
    result = invoke(
        "render",
        "--song",
        str(song),
        "-q",
        "--output_file",
        str(tmp_path / "no" / "such" / "o.mp4"),
    )
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_existing_output_is_not_replaced_without_overwrite(song, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"precious")
    result = invoke("render", "--song", str(song), "-q", "--output_file", str(out))
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert out.read_bytes() == b"precious"


def test_save_only_without_frames_folder(song, tmp_path):
    out = tmp_path / "o.mp4"
    result = invoke(
        "render",
        "--song",
        str(song),
        "-q",
        "-s",
        "--output_file",
        str(out),
        "--weights",
        "random",
        "--resolution",
        "128",
    )
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
