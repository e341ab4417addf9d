"""The segmentation library without models: heatmap -> instances, point sampling, optical-flow
warping, the propagation loop's fallbacks (with a scripted SAM2), RLE, overlays, workflow layout."""

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from vispipe.config import ConfigError
from vispipe.segment import layout
from vispipe.segment.detect.clipseg import find_instances
from vispipe.segment.files.masks import decode_rle, encode_rle, id_mask
from vispipe.segment.geometry import box_xyxy
from vispipe.segment.overlay import banner, color_of, draw_instances, hex_to_rgb
from vispipe.segment.refine import ring, sample_points
from vispipe.segment.track.flow import backward_flow, decide, propagate, warp_mask
from vispipe.segment.types import Refined

FLOW = {"scale": 1.0, "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}
BOUNDS = {
    "min_area_ratio": 0.5,
    "max_area_ratio": 2.0,
    "lost_area_ratio": 0.2,
    "min_sam2_score": 0.5,
    "use_object_score": True,
}


def blobs(shape=(120, 160), spots=(), background=0.05, noise=0.0, seed=0):
    """A synthetic heatmap: a low background plus rectangles ``(y0, y1, x0, x1, value)``."""
    heat = np.full(shape, background, np.float32)
    if noise:
        heat += np.random.default_rng(seed).uniform(0, noise, shape).astype(np.float32)
    for y0, y1, x0, x1, v in spots:
        heat[y0:y1, x0:x1] = v
    return heat


# ------------------------------------------------------------------------------ heatmap -> instances


def test_otsu_splits_two_blobs_into_two_instances_best_first():
    heat = blobs(spots=[(10, 40, 10, 50, 0.7), (60, 100, 90, 150, 0.9)], noise=0.05)
    found = find_instances(heat, min_cc_area=50, top_pct_fallback=0.97, min_score=0.1, max_instances=10)
    assert found.method == "otsu" and 0.05 < found.threshold < 0.7
    assert [c.box for c in found.components] == [[90, 60, 150, 100], [10, 10, 50, 40]]  # the hotter first
    assert [c.area for c in found.components] == [40 * 60, 30 * 40]
    assert found.components[0].score == pytest.approx(0.9) and found.components[1].score == pytest.approx(0.7)
    assert found.mask.sum() == 40 * 60 + 30 * 40


def test_components_below_min_area_are_dropped_and_max_instances_caps():
    heat = blobs(spots=[(10, 40, 10, 50, 0.8), (80, 84, 100, 104, 0.9), (60, 100, 90, 150, 0.7)])
    found = find_instances(heat, min_cc_area=50, top_pct_fallback=0.97, min_score=0.0, max_instances=10)
    assert len(found.components) == 2 and all(c.area >= 50 for c in found.components)  # the 4x4 speck is gone
    capped = find_instances(heat, min_cc_area=50, top_pct_fallback=0.97, min_score=0.0, max_instances=1)
    assert [c.box for c in capped.components] == [[10, 10, 50, 40]]


def test_percentile_fallback_when_otsu_finds_only_a_lukewarm_region():
    # Otsu separates the whole warm region (mean 0.35 < min_score); the top 2% is its hot core.
    heat = blobs(spots=[(20, 80, 20, 100, 0.3), (40, 60, 50, 70, 0.9)], background=0.0, noise=0.02)
    found = find_instances(heat, min_cc_area=100, top_pct_fallback=0.98, min_score=0.5, max_instances=10)
    assert found.method == "top_pct"
    assert found.threshold == pytest.approx(np.quantile(heat, 0.98))
    assert len(found.components) == 1
    core = found.components[0]
    assert core.box == [50, 40, 70, 60] and core.area == 400 and core.score == pytest.approx(0.9)


@pytest.mark.parametrize("heat", [np.full((60, 80), 0.3, np.float32), blobs((60, 80), background=0.01, noise=0.02)])
def test_nothing_usable_gives_no_instance(heat):
    found = find_instances(heat, min_cc_area=100, top_pct_fallback=0.97, min_score=0.2, max_instances=10)
    assert found.components == [] and found.method == "none" and not found.mask.any()


# ---------------------------------------------------------------------------------- point sampling


def square_mask(shape=(100, 100), y0=30, y1=70, x0=20, x1=60):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_points_inside_and_in_the_ring_seeded():
    mask = square_mask()
    pts, labels = sample_points(mask, 8, 6, 5, np.random.default_rng(1))
    assert pts.shape == (14, 2) and pts.dtype == np.float32 and list(labels) == [1] * 8 + [0] * 6
    xs, ys = pts[:, 0].astype(int), pts[:, 1].astype(int)
    assert mask[ys[:8], xs[:8]].all()
    # negatives: outside the mask, at most `border` pixels from it
    assert not mask[ys[8:], xs[8:]].any()
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    assert (dist[ys[8:], xs[8:]] <= 5.5).all()
    assert len({tuple(p) for p in pts}) == 14  # no repeats
    again, _ = sample_points(mask, 8, 6, 5, np.random.default_rng(1))
    other, _ = sample_points(mask, 8, 6, 5, np.random.default_rng(2))
    assert np.array_equal(pts, again) and not np.array_equal(pts, other)


def test_ring_width_and_small_regions_give_fewer_points():
    mask = square_mask()
    band = lambda r: cv2.dilate(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool) & ~mask  # noqa: E731
    r3 = ring(mask, 3)
    assert not (r3 & mask).any() and (r3 <= band(3)).all() and (band(2) <= r3).all()  # a disc: corners rounded
    assert r3.sum() < band(3).sum()
    tiny = np.zeros((10, 10), bool)
    tiny[4, 4] = True
    pts, labels = sample_points(tiny, 8, 100, 1, np.random.default_rng(0))
    assert (labels == 1).sum() == 1 and (labels == 0).sum() == 4  # one pixel inside, its 4-neighbourhood ring


# ----------------------------------------------------------------------------------- flow + warping


def textured_frame(shape, square, seed=0):
    """Smooth noise background with a textured bright square (Farneback needs texture)."""
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.uniform(0, 120, shape).astype(np.float32), (0, 0), 3)
    y0, y1, x0, x1 = square
    tex = cv2.GaussianBlur(rng.uniform(120, 255, (y1 - y0, x1 - x0)).astype(np.float32), (0, 0), 1.5)
    frame = bg.copy()
    frame[y0:y1, x0:x1] = tex
    return frame.astype(np.uint8), tex


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_farneback_warp_follows_a_moving_square(scale):
    shape, (dy, dx) = (160, 200), (4, 6)
    prev, tex = textured_frame(shape, (50, 100, 60, 110))
    cur, _ = textured_frame(shape, (50 + dy, 100 + dy, 60 + dx, 110 + dx))
    cur[50 + dy : 100 + dy, 60 + dx : 110 + dx] = tex  # the same texture, moved
    flow = backward_flow(np.dstack([prev] * 3), np.dstack([cur] * 3), {**FLOW, "scale": scale})
    assert flow.shape == (*shape, 2) and flow.dtype == np.float32
    prev_mask = square_mask(shape, 50, 100, 60, 110)
    truth = square_mask(shape, 50 + dy, 100 + dy, 60 + dx, 110 + dx)
    warped = warp_mask(prev_mask, flow)
    assert iou(warped, truth) > 0.9
    assert iou(warped, truth) > iou(prev_mask, truth) + 0.2  # it really moved


def test_warp_with_zero_flow_is_identity_and_border_is_empty():
    m = square_mask()
    assert np.array_equal(warp_mask(m, np.zeros((100, 100, 2), np.float32)), m)
    out_of_view = np.full((100, 100, 2), -500, np.float32)
    assert not warp_mask(m, out_of_view).any()


# --------------------------------------------------------------------------- propagation fallbacks


def refined(mask, iou=0.9, obj=1.0):
    return Refined(mask, iou, obj)


@pytest.mark.parametrize(
    "refined_area, iou_score, obj, expected",
    [
        (1000, 0.9, 2.0, ("refined", "ok", "refined")),
        (400, 0.9, 2.0, ("warped", "collapsed", "warped")),
        (2100, 0.9, 2.0, ("warped", "exploded", "warped")),
        (1000, 0.3, 2.0, ("warped", "low_score", "warped")),
        (1000, 0.9, -1.0, ("lost", "occluded", "warped")),
    ],
)
def test_decide(refined_area, iou_score, obj, expected):
    mask = np.zeros(4000, bool)
    mask[:refined_area] = True
    d = decide(1000, 1000, refined(mask, iou_score, obj), BOUNDS)
    assert (d.state, d.reason, d.carry) == expected


def test_decide_vanished_and_object_score_switch():
    m = np.ones(10, bool)
    assert decide(1000, 150, refined(m), BOUNDS).reason == "vanished"  # below lost_area_ratio 0.2
    assert decide(1000, 0, None, BOUNDS).state == "lost"
    d = decide(10, 10, refined(m, obj=-3.0), {**BOUNDS, "use_object_score": False})
    assert d.state == "refined"


class ScriptedRefiner:
    """Stands in for SAM2: answers each call from a script of functions (warped mask -> Refined)."""

    def __init__(self, script):
        self.script, self.calls = list(script), []

    def refine(self, image, masks, rng):
        self.calls.append(len(masks))
        step = self.script.pop(0)
        return [step(m) for m in masks]


def test_loop_states_with_a_scripted_refiner():
    shape = (80, 100)
    frames = [textured_frame(shape, (20, 50, 20, 60), seed=0)[0]] * 6  # a still scene: warping is identity
    frames = [np.dstack([f] * 3) for f in frames]
    first = {1: square_mask(shape, 20, 50, 20, 60), 2: square_mask(shape, 55, 75, 70, 95), 3: np.zeros(shape, bool)}
    grown = lambda m: refined(cv2.dilate(m.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool))  # noqa: E731
    script = [
        lambda m: refined(m),  # frame 1: both trusted
        grown,  # frame 2: both explode -> warped
        lambda m: refined(np.zeros_like(m)),  # frame 3: both collapse -> warped
        lambda m: refined(m, obj=-2.0),  # frame 4: occluded -> lost, carried hidden
        lambda m: refined(m, iou=0.2),  # frame 5: back, low score -> warped
    ]
    refiner = ScriptedRefiner(script)
    results = list(propagate(frames, first, refiner, FLOW, BOUNDS, seed=0))
    assert len(results) == 6
    assert set(results[0].masks) == {1, 2}  # the empty instance 3 never starts
    states = [[r.info[i]["state"] for r in results] for i in (1, 2)]
    assert states[0] == ["refined", "refined", "warped", "warped", "lost", "warped"] == states[1]
    assert [r.info[1]["reason"] for r in results[1:]] == ["ok", "exploded", "collapsed", "occluded", "low_score"]
    assert refiner.calls == [2, 2, 2, 2, 2]  # one batched SAM2 call per frame
    assert results[4].masks == {} and results[4].info[1]["area"] == 0
    assert np.array_equal(results[5].masks[1], first[1])  # the hidden mask came back unchanged


def test_loop_a_vanished_instance_is_lost_for_good_and_skips_sam2():
    shape = (60, 60)
    still = [np.dstack([textured_frame(shape, (10, 30, 10, 30))[0]] * 3)] * 3
    first = {1: square_mask(shape, 10, 30, 10, 30)}
    refiner = ScriptedRefiner([lambda m: refined(m)] * 2)
    # a lost_area_ratio above 1 makes any warp count as vanishing: lost on frame 1, and for good after
    results = list(propagate(still, first, refiner, FLOW, {**BOUNDS, "lost_area_ratio": 1.01}, seed=0))
    assert [r.info[1]["state"] for r in results] == ["refined", "lost", "lost"]
    assert [r.info[1]["reason"] for r in results[1:]] == ["vanished", "lost earlier"]
    assert refiner.calls == [0, 0]


def test_loop_without_instances_yields_empty_frames():
    frames = [np.zeros((20, 20, 3), np.uint8)] * 4
    refiner = ScriptedRefiner([lambda m: refined(m)] * 3)
    results = list(propagate(frames, {}, refiner, FLOW, BOUNDS, seed=0))
    assert len(results) == 4 and all(r.masks == {} and r.info == {} for r in results)


# ---------------------------------------------------------------------------------- masks, RLE


def test_rle_round_trip_and_json():
    rng = np.random.default_rng(0)
    mask = rng.uniform(size=(37, 53)) > 0.6
    rle = encode_rle(mask)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    back = decode_rle(json.loads(json.dumps(rle)))
    assert back.dtype == bool and np.array_equal(back, mask)
    assert coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()}) == mask.sum()


def test_id_mask_lower_id_wins_and_boxes():
    a, b = square_mask((50, 50), 0, 20, 0, 20), square_mask((50, 50), 10, 30, 10, 30)
    ids = id_mask({2: b, 1: a}, (50, 50))
    assert ids.dtype == np.uint8 and ids[15, 15] == 1 and ids[25, 25] == 2 and ids[40, 40] == 0
    assert box_xyxy(b) == [10, 10, 30, 30]


# ---------------------------------------------------------------------------------------- overlay

STYLE = {"alpha": 0.5, "outline": 2, "labels": False, "font_scale": 0.5, "colors": ["#ff0000", "#00ff00"]}


def test_overlay_colours_fill_outline_and_background():
    image = np.full((60, 80, 3), 100, np.uint8)
    ids = np.zeros((60, 80), np.uint8)
    ids[10:30, 10:30], ids[35:55, 40:70] = 1, 3  # id 3 wraps round to the first colour
    out = draw_instances(image, ids, {}, STYLE)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert tuple(out[20, 20]) == (178, 50, 50)  # 0.5 * (255, 0, 0) + 0.5 * 100, rounded
    assert tuple(out[10, 20]) == (255, 0, 0)  # the outline, full colour
    assert tuple(out[45, 55]) == (178, 50, 50) and tuple(out[35, 55]) == (255, 0, 0)
    assert tuple(out[2, 2]) == (100, 100, 100) and tuple(out[58, 5]) == (100, 100, 100)  # untouched
    assert color_of(2, STYLE["colors"]) == (0, 255, 0) and hex_to_rgb("#17becf") == (23, 190, 207)


def test_overlay_without_instances_is_the_frame_and_labels_draw():
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    assert np.array_equal(draw_instances(image, np.zeros((60, 80), np.uint8), {}, STYLE), image)
    ids = np.zeros((60, 80), np.uint8)
    ids[30:50, 20:60] = 2
    plain = draw_instances(image, ids, {2: "rabbit 2"}, STYLE)
    labelled = draw_instances(image, ids, {2: "rabbit 2"}, {**STYLE, "labels": True})
    changed = np.any(plain != labelled, axis=2)
    assert changed.any() and not changed[50:].any()  # the label sits above the instance
    shown = banner(image[..., 0], "RANDOM WEIGHTS")
    assert shown.shape == (60, 80, 3) and (shown[-1] == (200, 0, 0)).all()


# ------------------------------------------------------------------------------- workflow layout


def test_targets_fan_out_over_videos_images_and_unknown_keys_fail():
    seg = {
        "targets": {"rabbit": {"prompt": "rabbit"}, "bird": {"prompt": "a small bird"}},
        "videos": {"a": {"targets": ["rabbit", "bird"]}, "b": {"targets": ["bird"]}},
        "images": {"still": {"targets": ["rabbit"]}},
    }
    layout.check_target_keys(seg)
    outs = layout.final_outputs(seg)
    assert sum(o.endswith("overlay.mp4") for o in outs) == 3
    assert "results/segment/a/bird/overlay.mp4" in outs and "results/segment/images/still/rabbit/instances.json" in outs
    assert not any(" " in o for o in outs)
    seg["videos"]["b"]["targets"] = ["fox"]
    with pytest.raises(ConfigError, match=r"segment.videos.b.targets names 'fox'.*known: rabbit, bird"):
        layout.check_target_keys(seg)
    assert layout.one_of(["a.b", "c"]) == r"a\.b|c" and layout.one_of([]) == "(?!)"
