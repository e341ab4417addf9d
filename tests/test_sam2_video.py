"""SAM2's own tracker (segment.propagate.method: sam2_video) with the demo's tiny random SAM2, and
EdgeTAM's (edgetam_video) through the same streaming loop: one model folder serves Sam2Model and
Sam2VideoModel; for both trackers pruning changes no output, re-anchored or not, yet keeps memory flat
over 300 streamed frames, where transformers' session grows; re-detection anchors the tracker; the timings."""

import threading
import time

import numpy as np
import pytest
import torch
from transformers import Sam2Model, Sam2VideoModel

from vispipe.errors import UserError
from vispipe.segment import models
from vispipe.segment.timing import Stopwatch, ahead
from vispipe.segment.track.loop import track
from vispipe.segment.track.sam2_video import Sam2VideoTracker, TrackerStepper

CPU = torch.device("cpu")
BOUNDS = {"use_object_score": True}


@pytest.fixture(scope="module")
def video_sam2(tiny_models):
    return models.load("sam2", tiny_models["sam2"], CPU, video=True)


@pytest.fixture(scope="module")
def edgetam(tmp_path_factory):
    """A tiny random EdgeTAM, fetched as a run fetches it and loaded back with the Hub offline."""
    folder = tmp_path_factory.mktemp("models") / "edgetam"
    models.fetch({"source": "random-tiny", "dir": str(folder.parent)}, {"edgetam": folder})
    return models.load("edgetam", folder, CPU, video=True)


@pytest.fixture(params=["sam2", "edgetam"])
def tracker_model(request):
    """Each tracker model the streaming loop runs: SAM2's and EdgeTAM's."""
    return request.getfixturevalue({"sam2": "video_sam2", "edgetam": "edgetam"}[request.param])


def clip(n: int, size=(48, 64), seed=0):
    """A textured square drifting over a textured background, and its first mask."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    texture = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    frames = []
    for k in range(n):
        frame = background.copy()
        x = 8 + (k % 30)
        frame[16:32, x : x + 16] = texture
        frames.append(frame)
    first = np.zeros(size, bool)
    first[16:32, 8:24] = True
    return frames, first


def test_one_folder_loads_as_image_and_video_model(tiny_models, video_sam2, tmp_path):
    image = models.load("sam2", tiny_models["sam2"], CPU)
    assert isinstance(image.model, Sam2Model) and isinstance(video_sam2.model, Sam2VideoModel)
    shared = video_sam2.model.state_dict()
    for name, tensor in image.model.state_dict().items():  # the image model is the video model's subset
        assert torch.equal(tensor, shared[name]), name
    assert any(n.startswith("memory_attention") for n in shared) and not any(
        n.startswith("memory_attention") for n in image.model.state_dict()
    )
    # the decoder's sizes survive the round trip (a dict mask_decoder_config would lose them)
    decoder = video_sam2.model.config.mask_decoder_config
    assert (decoder.hidden_size, decoder.mlp_dim, decoder.iou_head_hidden_dim) == (128, 256, 128)
    # a folder saved through Sam2Model (as fetch_models once did) has no memory: refused, with the fix
    old = tmp_path / "old"
    image.model.save_pretrained(old)
    image.processor.save_pretrained(old)
    (old / "source.json").write_text((tiny_models["sam2"] / "source.json").read_text())
    models.load("sam2", old, CPU)  # still fine for image refinement
    with pytest.raises(UserError, match="saved without SAM2's memory.*rerun the fetch_models rule"):
        models.load("sam2", old, CPU, video=True)


def stream(video_sam2, frames, first, prune=True, max_cond=4, every_k=None):
    """Track ``first`` through ``frames``; yields (k, tracker, output) per frame."""
    tracker = Sam2VideoTracker(video_sam2, max_cond_frames=max_cond, prune=prune)
    tracker.add(0, {1: first})
    yield 0, tracker, tracker.track(0, frames[0])
    for k in range(1, len(frames)):
        tracker.prune(k - 1)
        yield k, tracker, tracker.track(k, frames[k])


def test_pruning_changes_no_output(tracker_model):
    """Pruning drops only what no later frame reads: 40 frames (past the 15-frame memory window) come
    out bit for bit as transformers' session that keeps everything gives them."""
    frames, first = clip(40)
    pruned = [out for _, _, out in stream(tracker_model, frames, first)]
    kept = [out for _, _, out in stream(tracker_model, frames, first, prune=False)]
    for k, (a, b) in enumerate(zip(pruned, kept)):
        assert np.array_equal(a[1][0], b[1][0]) and a[1][1] == b[1][1], f"frame {k}"
    assert any(out[1][0].any() for out in pruned[1:])


def test_re_anchoring_a_pruned_session_changes_no_output(tracker_model):
    """Two objects; object 1 re-anchored on frame 20 (a re-detection), past the memory window. Both
    objects' masks and scores on every frame equal those of the session that keeps everything. (The
    anchor once re-ran frame 20 without its image: the model's whole-video path then counted the
    frames the pruned session holds, and object 2's pointers were cut, or its score became NaN.)"""
    frames, first = clip(36)
    second = np.zeros_like(first)
    second[34:46, 40:60] = True

    def run(prune):
        tracker = Sam2VideoTracker(tracker_model, prune=prune)
        stepper, carried = TrackerStepper(tracker, BOUNDS), {1: first, 2: second}
        stepper.start(frames[0], dict(carried))
        outs = []
        for k in range(1, len(frames)):
            outs.append(stepper.step(k, frames[k], None, [1, 2], carried, set()))
            if k == 20:
                stepper.anchor(k, frames[k], {1: np.roll(first, 20, axis=1)})
        return outs

    pruned, kept = run(True), run(False)
    for k, (a, b) in enumerate(zip(pruned, kept), start=1):
        for i in (1, 2):
            assert a.info[i] == b.info[i] and np.isfinite(a.info[i]["object_score"]), (k, i, a.info[i], b.info[i])
            assert np.array_equal(a.masks.get(i, 0), b.masks.get(i, 0)), (k, i)


def test_memory_stays_flat_over_300_frames(tracker_model):
    frames, first = clip(300)
    held = {}
    for k, tracker, _ in stream(tracker_model, frames, first):
        held[k] = tracker.memory_bytes()
    plateau = held[30]
    assert all(held[k] == plateau for k in range(30, 300)), {k: held[k] for k in (30, 100, 200, 299)}
    assert len(tracker.session.output_dict_per_obj[0]["non_cond_frame_outputs"]) == tracker.window + 1  # + this frame
    # the control: transformers' session keeps every frame, and grows by the same amount each frame
    growth = {}
    for k, tracker, _ in stream(tracker_model, frames[:60], first, prune=False):
        growth[k] = tracker.memory_bytes()
    assert growth[59] > 2 * growth[20] > 0 and growth[59] > plateau
    assert growth[59] - growth[58] == growth[40] - growth[39] > 0


def test_anchor_makes_a_conditioning_frame_and_keeps_them_bounded(video_sam2):
    frames, first = clip(30)
    tracker = Sam2VideoTracker(video_sam2, max_cond_frames=2)
    stepper = TrackerStepper(tracker, BOUNDS)
    stepper.start(frames[0], {1: first})
    ids, carried = [1], {1: first}
    late = np.zeros_like(first)
    late[2:12, 40:60] = True
    for k in range(1, 30):
        stepper.step(k, frames[k], None, ids, carried, set())
        if k % 5 == 0:  # re-anchor object 1 where it is, and start object 7 on frame 5
            masks = {1: np.roll(first, k % 30, axis=1)} | ({7: late} if k == 5 else {})
            ids = sorted(set(ids) | set(masks))
            stepper.anchor(k, frames[k], masks)
            out = tracker.track(k)  # frame k again: the anchored masks are its output (SAM2 uses them as given)
            for i, m in masks.items():
                iou = (out[i][0] & m).sum() / (out[i][0] | m).sum()
                assert iou > 0.9, (k, i, iou)
    s = tracker.session
    assert s.obj_ids == [1, 7]
    cond = {s.obj_idx_to_id(idx): sorted(o["cond_frame_outputs"]) for idx, o in s.output_dict_per_obj.items()}
    assert cond == {1: [0, 25], 7: [5]}  # object 1: the first and the latest of 0, 5, ..., 25


def test_track_with_the_tracker_writes_states(video_sam2):
    """The shared loop with SAM2's tracker: every frame has every id, with a state and the object score."""
    frames, first = clip(12)
    tracker = Sam2VideoTracker(video_sam2)
    results = list(track(((f, None) for f in frames), {1: first}, TrackerStepper(tracker, BOUNDS)))
    assert len(results) == 12 and results[0].events == [{"id": 1, "event": "born", "reason": "first frame"}]
    for r in results[1:]:
        info = r.info[1]
        assert info["state"] in ("refined", "lost") and isinstance(info["object_score"], float)
        assert (1 in r.masks) == (info["state"] == "refined") and info["reason"] in ("tracked", "occluded", "vanished")


def test_stopwatch_charges_each_stage_its_own_time():
    clock = Stopwatch()
    with clock("outer"):
        time.sleep(0.02)
        with clock("inner"):
            time.sleep(0.06)
    s = clock.summary(frames=2)
    assert s["stage_seconds"]["inner"] >= 0.06 and 0.02 <= s["stage_seconds"]["outer"] < 0.06
    assert list(s["stage_seconds"]) == ["inner", "outer"] and s["ms_per_frame"]["inner"] >= 30


def test_ahead_keeps_order_raises_and_stops():
    assert list(ahead(range(50), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        list(ahead(broken()))
    made = []

    def counted():
        for i in range(1000):
            made.append(i)
            yield i

    it = ahead(counted(), depth=2)
    assert next(it) == 0
    it.close()  # the consumer leaves: the producer stops soon after, not after 1000 items
    assert len(made) < 10 and not any(t.name == "prefetch" for t in threading.enumerate())


def test_re_detection_starts_a_new_track_in_sam2s_memory(video_sam2):
    """The shared loop's re-detection with SAM2's tracker: a detection far from every track starts a
    new id (event born), which SAM2 then tracks as one of its objects on the following frames."""
    frames, first = clip(9)
    late = np.zeros_like(first)
    late[2:12, 44:60] = True

    class Oracle:
        def detect(self, image, k):
            return [late]

    tracker = Sam2VideoTracker(video_sam2)
    results = list(track(((f, None) for f in frames), {1: first}, TrackerStepper(tracker, BOUNDS), Oracle(),
                         {"every": 4, "match_iou": 0.5, "min_similarity": 0.99}))  # fmt: skip
    born = [(k, e["id"]) for k, r in enumerate(results) for e in r.events if e["event"] == "born"]
    assert born[0] == (0, 1) and born[1][0] == 4 and born[1][1] > 1, born
    new = born[1][1]
    assert new in tracker.session.obj_ids and np.array_equal(results[4].masks[new], late)
    # SAM2's own memory: the detection conditions the new object at frame 4, and the tracker's own
    # outputs for it fill frames 5-7 (frame 8 re-detects again); object 1 stays conditioned at frame 0
    memory = {i: tracker.session.output_dict_per_obj[tracker.session.obj_id_to_idx(i)] for i in (1, new)}
    assert min(memory[new]["cond_frame_outputs"]) == 4 and min(memory[1]["cond_frame_outputs"]) == 0
    assert {5, 6, 7} <= set(memory[new]["non_cond_frame_outputs"]), memory[new]["non_cond_frame_outputs"].keys()
    # and the loop reports SAM2's answer there: an object score for the new id on each of those frames
    assert all(r.info[new]["object_score"] is not None for r in results[5:8]), [r.info[new] for r in results[5:8]]
