"""RGB -> YUV 4:2:0 inside the graph equals the host conversion and FFmpeg's own."""

from __future__ import annotations

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from dmv_fast.video.yuv import rgb_to_yuv420


def _identity_model(b: int, h: int, w: int) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("rgb_in", TensorProto.UINT8, [b, h, w, 3])
    out = helper.make_tensor_value_info("frames", TensorProto.UINT8, [b, h, w, 3])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["rgb_in"], ["frames"])], "g", [inp], [out]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _frames(b: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, w)[None, None, :, None] * np.ones((b, h, w, 3))
    return np.clip(smooth + rng.normal(0, 40, (b, h, w, 3)), 0, 255).astype(np.uint8)


def test_graph_conversion_equals_host_conversion():
    frames = _frames(2, 16, 24)
    from dmv_fast_export.yuv_tail import append_yuv420

    model = append_yuv420(_identity_model(2, 16, 24))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (yuv,) = sess.run(None, {"rgb_in": frames})
    assert yuv.shape == (2, 24, 24) and yuv.dtype == np.uint8
    np.testing.assert_array_equal(yuv, rgb_to_yuv420(frames))


def test_host_conversion_matches_ffmpeg_within_rounding():
    frames = _frames(1, 32, 32)
    ours = rgb_to_yuv420(frames)[0].astype(int)
    theirs = (
        av.VideoFrame.from_ndarray(frames[0], format="rgb24")
        .reformat(format="yuv420p")
        .to_ndarray()
        .astype(int)
    )
    # Luma is a per-pixel matrix product: FFmpeg's fixed point rounds within one level.
    assert np.abs(ours[:32] - theirs[:32]).max() <= 1
    # Chroma subsampling filters differ slightly; on average they agree closely.
    assert np.abs(ours[32:] - theirs[32:]).mean() < 3


def test_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420(np.zeros((1, 5, 4, 3), np.uint8))


def test_writer_takes_yuv420p_planes_and_nvenc_layout_is_interleaved(tmp_path):
    from fractions import Fraction

    from dmv_fast.video.nvenc import yuv420p_to_nv12
    from dmv_fast.video.writer import VideoWriter

    frames = _frames(4, 32, 32)
    out = tmp_path / "yuv.mp4"
    with VideoWriter(
        out, (32, 32), Fraction(22050, 512), encoder="x264", crf=0, pixel_format="yuv420p"
    ) as w:
        w.write(rgb_to_yuv420(frames))
    with av.open(str(out)) as c:
        back = [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
    assert len(back) == 4
    assert np.abs(back[0].astype(int) - rgb_to_yuv420(frames)[0]).max() <= 1

    planar = rgb_to_yuv420(frames)[0]
    nv12 = yuv420p_to_nv12(planar)
    np.testing.assert_array_equal(nv12[:32], planar[:32])
    np.testing.assert_array_equal(nv12[32:].reshape(-1)[0::2], planar[32:40].reshape(-1))
    np.testing.assert_array_equal(nv12[32:].reshape(-1)[1::2], planar[40:].reshape(-1))
