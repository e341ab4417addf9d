"""SAM 3 (segment.detector sam3, segment.propagate.method sam3_video) with a tiny random model built from
config objects: one folder loads as the detector and as the tracker; the detector's instances are in
the image, best first, one per object across phrases; the tracker's pruning changes no output and,
with its conditioning frames capped, keeps memory flat over 300 streamed frames, where transformers'
session grows; SAM 3's ids map onto ours (first-frame instances keep theirs, later objects are born,
a missing one is lost and revived with its id)."""

import numpy as np
import pytest
import torch

from vispipe.errors import UserError
from vispipe.segment import models
from vispipe.segment.detect import sam3
from vispipe.segment.track import sam3_video
from vispipe.segment.track.loop import track

CPU = torch.device("cpu")
KNOBS = {"score_threshold": 0.5, "mask_threshold": 0.5, "nms_iou": 0.5, "max_instances": 10}
VIDEO = {"score_threshold": 0.5, "new_object_threshold": 0.9, "max_objects": 10, "max_cond_frames": 4,
         "offload_state": False}  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "sam3"
    models.fetch({"source": "random-tiny", "dir": str(folder.parent)}, {"sam3": folder})
    return folder


@pytest.fixture(scope="module")
def video(folder):
    """The tracker, set to exercise every pruning rule on a short clip: new objects on later frames
    (a stricter threshold for new ones), a re-conditioning every 4 frames (SAM 3's is every 16, on
    confident frames only)."""
    loaded = models.load("sam3", folder, CPU, video=True)
    m = loaded.model
    m.assoc_iou_thresh, m.high_conf_thresh, m.high_iou_thresh, m.recondition_every_nth_frame = 0.5, -1.0, 0.5, 4
    return loaded


def square(k: int, h: int = 90, w: int = 130) -> np.ndarray:
    """A red square moving over a dark background."""
    image = np.full((h, w, 3), 40, np.uint8)
    x, y = (5 + 3 * k) % (w - 30), 20 + int(10 * np.sin(k / 5))
    image[y : y + 30, x : x + 30] = (220, 60, 60)
    return image


def test_one_folder_loads_as_detector_and_tracker(folder, video):
    from transformers import Sam3Model, Sam3VideoModel

    image = models.load("sam3", folder, CPU)
    assert isinstance(image.model, Sam3Model) and isinstance(video.model, Sam3VideoModel) and image.random
    shared = video.model.detector_model.state_dict()
    for name, tensor in image.model.state_dict().items():  # the detector is the tracker's share
        assert torch.equal(tensor, shared[name]), name


def test_instances_are_in_the_image_best_first_and_one_per_object_across_phrases(folder):
    loaded = models.load("sam3", folder, CPU)
    image = square(3, 180, 260)
    found = sam3.found(loaded, image, ["a red square"], KNOBS)
    assert found, "the tiny model finds something at the usual thresholds"
    for box, mask in found:
        x0, y0, x1, y1 = box.xyxy
        assert 0 <= x0 < x1 <= 260 and 0 <= y0 < y1 <= 180 and mask.shape == (180, 260) and mask.any()
        assert box.phrase == "a red square" and KNOBS["score_threshold"] <= box.score <= 1
    assert [b.score for b, _ in found] == sorted((b.score for b, _ in found), reverse=True)
    # the same phrase twice finds every object twice: the NMS across phrases keeps one of each
    twice = sam3.found(loaded, image, ["a red square", "a red square"], KNOBS)
    assert [b.xyxy for b, _ in twice] == [b.xyxy for b, _ in found]
    every = dict(KNOBS, nms_iou=1.0, max_instances=255)  # no NMS, no cut: each phrase's every instance
    assert len(sam3.found(loaded, image, ["a red square"] * 2, every)) == 2 * len(
        sam3.found(loaded, image, ["a red square"], every)
    )
    assert sam3.found(loaded, image, ["a red square"], dict(KNOBS, score_threshold=1.0)) == []
    assert len(sam3.found(loaded, image, ["a red square"] * 2, dict(KNOBS, nms_iou=1.0, max_instances=1))) == 1
    with pytest.raises(UserError, match=r"is \d+ tokens, and SAM 3 reads at most 32: shorten it"):
        sam3.found(loaded, image, ["a red square on a dark grey background, moving"], KNOBS)  # a token a letter


def stream(video, n, prune=True, cap=True, max_objects=10, max_cond_frames=4):
    """The square clip streamed: (k, tracker, frame k's objects); the tiny model finds 7 objects on
    frame 0 and one more on each of frames 1 to 3 (up to ``max_objects``)."""
    knobs = dict(VIDEO, max_objects=max_objects, max_cond_frames=max_cond_frames)
    tracker = sam3_video.Sam3VideoTracker(video, ["a red square"], knobs, prune=prune, cap=cap)
    for k in range(n):
        yield k, tracker, tracker.track(k, square(k))


def test_pruning_changes_no_output(video):
    """Pruning drops only what no later frame reads: 40 frames (past the memory windows, several
    re-conditionings, objects added on later frames) come out bit for bit as transformers' session
    that keeps everything gives them. (The conditioning frames are not capped here: capping is the one
    pruning that changes outputs.)"""
    pruned = [out for _, _, out in stream(video, 40, cap=False)]
    kept = [out for _, _, out in stream(video, 40, prune=False)]
    for k, (a, b) in enumerate(zip(pruned, kept)):
        assert a.keys() == b.keys(), k
        for i in a:
            assert np.array_equal(a[i][0], b[i][0]) and a[i][1] == b[i][1], (k, i)
    assert len(kept[-1]) > len(kept[0]) and any(m.any() for m, _ in kept[-1].values())  # objects were added


def test_memory_stays_flat_over_300_frames(video):
    """4 objects, each keeping one conditioning frame: the bytes the session holds go up and down by
    an object's tracked output as re-conditionings come and go, and no higher in frames 175-299 than
    in frames 50-174. (With 2 kept and 8 objects, it climbs until every object has re-conditioned,
    about frame 200, then holds the same way.)"""
    held = {}
    for k, tracker, _ in stream(video, 300, max_objects=4, max_cond_frames=1):
        held[k] = tracker.memory_bytes()
    early, late = max(held[k] for k in range(50, 175)), max(held[k] for k in range(175, 300))
    assert late == early, {k: held[k] for k in (50, 100, 200, 299)}
    assert max(held.values()) - min(held[k] for k in range(50, 300)) < 0.01 * early
    cond = [len(o["cond_frame_outputs"]) for o in tracker.session.output_dict_per_obj.values()]
    assert cond == [1] * 4
    # the control: transformers' session keeps every frame's pixels and outputs, and grows each frame
    growth = {k: tracker.memory_bytes() for k, tracker, _ in stream(video, 40, prune=False, max_objects=4)}
    assert growth[39] > 2 * growth[15] > 0 and growth[39] > held[299]


class Scripted:
    """A tracker whose answers are given: frame -> {SAM 3's id: mask}."""

    def __init__(self, answers):
        self.answers = answers

    def track(self, k, image):
        return {i: (m, 0.9) for i, m in self.answers[k].items()}


def test_sam3s_ids_map_onto_ours():
    """Frame 0: SAM 3's object 10 is the first frame's instance 1 (our 2 it did not find, its 11 matches
    nothing of ours). Later: 11 and 12 are born with our next ids; 10 missing on frame 2 is lost, and
    revived with id 1 on frame 3; our instance 2 is lost from frame 1 on."""
    a, b, c, ours2 = (np.zeros((20, 20), bool) for _ in range(4))
    a[2:8, 2:8], b[12:18, 12:18], c[2:8, 12:18], ours2[12:18, 2:8] = True, True, True, True
    answers = {0: {10: a, 11: b}, 1: {10: a, 11: b, 12: c}, 2: {11: b, 12: c}, 3: {10: a, 11: b, 12: c}}
    frames = ((np.zeros((20, 20, 3), np.uint8), None) for _ in range(4))
    results = list(track(frames, {1: a, 2: ours2}, sam3_video.Sam3Stepper(Scripted(answers))))
    events = [(k, e["event"], e["id"]) for k, r in enumerate(results) for e in r.events]
    assert events == [(0, "born", 1), (0, "born", 2), (1, "born", 3), (1, "born", 4), (1, "lost", 2), (2, "lost", 1),
                      (3, "revived", 1)]  # fmt: skip
    assert np.array_equal(results[1].masks[3], b) and np.array_equal(results[1].masks[4], c)
    assert sorted(results[3].masks) == [1, 3, 4] and results[3].info[2]["state"] == "lost"
    assert results[2].info[1] == {**results[2].info[1], "state": "lost", "reason": "not detected"}
