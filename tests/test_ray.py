"""Segmented rendering on a local Ray cluster of two simulated nodes, one declaring a GPU."""

from __future__ import annotations

import dataclasses
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from _media import probe

pytest.importorskip("torch")
ray = pytest.importorskip("ray")

from dmv_fast.render.api import render  # noqa: E402
from dmv_fast.render.ray_pool import RayPool, RaySegmentWorker, actors_that_fit  # noqa: E402
from dmv_fast.render.segmented import render_many  # noqa: E402
from dmv_fast.settings.options import RenderOptions  # noqa: E402
from dmv_fast.settings.spec import ModelSpec  # noqa: E402

FPS = Fraction(22050, 2048)
ROOT = Path(__file__).resolve().parents[1]


class CrashOnce(RaySegmentWorker):
    """Dies (the whole process, as a crash would) on the first attempt at segment 1."""

    def render(self, task, on_frames=None):
        marker = Path(os.environ["DMV_FAST_TEST_CRASH"])
        if task.key[1] == 1 and marker.exists():
            marker.rename(marker.with_suffix(".crashed"))
            os._exit(1)
        return super().render(task, on_frames)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes with one CPU each; the second declares a GPU (scheduling only)."""
    from ray.cluster_utils import Cluster

    base = tmp_path_factory.mktemp("ray")
    saved = dict(os.environ)
    # The nodes' worker processes inherit this environment: the code under test, the
    # tests folder (for CrashOnce), a shared graph cache and the crash marker.
    paths = [str(ROOT), str(ROOT / "export"), str(ROOT / "tests"), os.environ.get("PYTHONPATH")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.environ["DMV_FAST_CACHE"] = str(base / "dmv-cache")
    os.environ["DMV_FAST_TEST_CRASH"] = str(base / "crash.marker")
    small = 80 * 1024 * 1024
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": small})
    try:
        c.add_node(num_cpus=1, num_gpus=1, object_store_memory=small)
        ray.init(address=c.address, logging_level="WARNING")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from dmv_fast_export.weights import random_model, save_pretrained, standard_config

    config = standard_config(128)
    config.channel_width = 4
    folder = tmp_path_factory.mktemp("tiny-biggan")
    save_pretrained(random_model(config, seed=3), folder)
    return folder


def _opts(song: Path, out: Path, **kw) -> RenderOptions:
    base = dict(song=str(song), output_file=str(out), frame_length=2048, seed=11, encoder="x264")
    # crf 0 (lossless): a segmented render decodes to exactly the one-process render's frames.
    base.update(crf=0, **kw)
    return RenderOptions(**base)


def _spec(weights: Path, backend: str = "cpu") -> ModelSpec:
    return ModelSpec(resolution=128, weights=str(weights), batch_size=4, backend=backend)


class _Watching:
    """Passes a pool through and keeps what each finished segment reported."""

    def __init__(self, inner):
        self.inner, self.local, self.done = inner, inner.local, []

    def run(self, tasks):
        for done in self.inner.run(tasks):
            self.done.append(done)
            yield done

    def close(self):
        self.inner.close()


def _assert_same_video(path: Path, ref: Path) -> None:
    a, b = probe(path), probe(ref)
    assert a.frames == b.frames and a.average_rate == b.average_rate == FPS
    assert np.array_equal(a.decoded, b.decoded)
    assert a.video_start == 0 and abs(a.audio_start) < 1e-3
    assert abs(a.audio_duration - a.video_duration) <= 1 / FPS
    assert abs(a.audio_duration - b.audio_duration) < 1e-3


def _reference(opts: RenderOptions, spec: ModelSpec, tmp_path: Path) -> Path:
    out = tmp_path / f"ref-{Path(opts.output_file).name}"
    render(dataclasses.replace(opts, output_file=str(out)), spec)
    return out


def test_actors_that_fit_counts_per_node():
    nodes = [
        {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
        {"Alive": True, "Resources": {"CPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    assert actors_that_fit(nodes, {"CPU": 1.0, "GPU": 1.0}) == 2
    assert actors_that_fit(nodes, {"CPU": 1.0, "GPU": 0.25}) == 8
    assert actors_that_fit(nodes, {"CPU": 1.0}) == 17


def test_cpu_actors_on_two_nodes_render_several_songs_like_one_process(
    cluster, tiny_weights, make_song, tmp_path
):
    songs = [
        make_song(f"s{i}.wav", seconds=2.0 + i, rate=44100, channels=2, seed=i) for i in (0, 1)
    ]
    options = [_opts(s, tmp_path / f"{s.stem}.mp4") for s in songs]
    spec = _spec(tiny_weights)
    pool = _Watching(RayPool(spec))
    assert pool.inner.actors == 2 and not pool.inner.on_gpu
    try:
        results = render_many(options, spec, pool=pool, segment_frames=8)
    finally:
        pool.close()
    # The same two actors, one per node, served both songs.
    assert len({d.node for d in pool.done}) == 2
    assert len({d.pid for d in pool.done}) == 2
    assert {d.key[0] for d in pool.done} == {0, 1}
    for opts, result in zip(options, results, strict=True):
        assert result.frames == probe(Path(opts.output_file)).frames
        _assert_same_video(Path(opts.output_file), _reference(opts, spec, tmp_path))


def test_a_gpu_actor_killed_mid_render_is_retried(cluster, tiny_weights, make_song, tmp_path):
    marker = Path(os.environ["DMV_FAST_TEST_CRASH"])
    marker.touch()
    song = make_song("song.wav", seconds=3.0, rate=44100, channels=2)
    # backend auto: GPU actors where the cluster has GPUs (the graph itself falls back to
    # the CPU here, with one warning, as there is no real GPU).
    opts = _opts(song, tmp_path / "v.mp4")
    spec = _spec(tiny_weights, backend="auto")
    pool = _Watching(RayPool(spec, worker_class=CrashOnce))
    assert pool.inner.actors == 1 and pool.inner.on_gpu
    try:
        (result,) = render_many([opts], spec, pool=pool, segment_frames=8)
    finally:
        pool.close()
    assert marker.with_suffix(".crashed").exists()  # it did die on segment 1
    assert sorted(d.key[1] for d in pool.done) == [0, 1, 2, 3, 4]  # segment 1 retried once
    assert len({d.pid for d in pool.done}) == 2  # by the restarted actor
    assert result.frames == 33
    _assert_same_video(tmp_path / "v.mp4", _reference(opts, spec, tmp_path))


def test_ray_address_renders_through_the_library_entry_point(
    cluster, tiny_weights, make_song, tmp_path
):
    from dmv_fast.render.segmented import render_segmented

    song = make_song("song.wav", seconds=2.0, rate=22050, channels=1)
    opts = _opts(song, tmp_path / "v.mp4")
    spec = _spec(tiny_weights)
    result = render_segmented(opts, spec, ray_address="auto", segment_frames=8)
    assert ray.is_initialized()  # the driver's own Ray session is left as it was
    assert result.frames == probe(tmp_path / "v.mp4").frames
    _assert_same_video(tmp_path / "v.mp4", _reference(opts, spec, tmp_path))


def test_a_tall_frame_renders_on_ray_actors_like_one_process(
    cluster, tiny_weights, make_song, tmp_path
):
    """The frame's shape travels with the plan to the actors: 9:16 on Ray is the one-process
    9:16 video, frame for frame."""
    from dmv_fast.render.segmented import render_segmented

    song = make_song("song.wav", seconds=2.0, rate=22050, channels=1)
    opts = _opts(song, tmp_path / "tall.mp4")
    spec = dataclasses.replace(_spec(tiny_weights), aspect="9:16")
    result = render_segmented(opts, spec, ray_address="auto", segment_frames=8)
    video = probe(tmp_path / "tall.mp4")
    assert video.decoded.shape[1:] == (228, 128, 3) and result.frames == video.frames
    _assert_same_video(tmp_path / "tall.mp4", _reference(opts, spec, tmp_path))
