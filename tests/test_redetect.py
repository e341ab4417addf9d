"""Re-detection in the propagation loop: late objects get new ids, objects that come back get their
old ids, and a miss hides an object without losing it. An oracle detector (the synthetic clip's true
masks, as a perfect CLIPSeg + SAM2 would give) isolates the matching from the models."""

import numpy as np
import pytest

from vispipe.segment.associate import match_score
from vispipe.segment.evaluation.synthetic import make_clip
from vispipe.segment.track.flow import propagate
from vispipe.segment.types import Refined

FLOW = {"method": "dis", "dis_preset": "fast", "scale": 1.0}
BOUNDS = {"min_area_ratio": 0.5, "max_area_ratio": 2.0, "lost_area_ratio": 0.2, "min_sam2_score": 0.5,
          "use_object_score": True, "refine": False}  # fmt: skip


class Oracle:
    """The true masks of the objects in view, in a shuffled order; ``miss`` drops objects on given frames."""

    def __init__(self, clip, miss=None):
        self.clip, self.miss, self.calls = clip, miss or {}, []

    def detect(self, image, k):
        self.calls.append(k)
        ids = [i for i in np.unique(self.clip.masks[k]) if i and i not in self.miss.get(k, ())]
        np.random.default_rng(k).shuffle(ids)
        return [self.clip.masks[k] == i for i in ids]


class OracleRefiner:
    """A perfect SAM2: each warped mask becomes the true mask of the object it overlaps most; no
    object under it means absent (SAM2's object score below 0: occluded or gone)."""

    def __init__(self, clip):
        self.clip, self.k = clip, 0

    def refine(self, image, masks, rng):
        k = next(i for i, f in enumerate(self.clip.frames) if f is image or np.array_equal(f, image))
        out = []
        for m in masks:
            ids, counts = np.unique(self.clip.masks[k][m], return_counts=True)
            counts[ids == 0] = 0
            if counts.max(initial=0) == 0:
                out.append(Refined(np.zeros_like(m), 0.0, -1.0))
            else:
                out.append(Refined(self.clip.masks[k] == ids[counts.argmax()], 1.0, 1.0))
        return out


@pytest.fixture(scope="module")
def clip():
    return make_clip(40, seed=0)


def run(clip, every, detector=None):
    first = {i: clip.masks[0] == i for i in (1, 2)}  # object 3 is not in view yet
    redetect = {"every": every, "match_iou": 0.5, "min_similarity": 0.8}
    bounds = dict(BOUNDS, refine=True)
    return list(propagate(iter(clip.frames), first, OracleRefiner(clip), FLOW, bounds, 0, detector or Oracle(clip),
                          redetect))  # fmt: skip


def owner(clip, k, mask):
    """The true object that a predicted mask covers most, and the IoU with it."""
    ious = {i: np.logical_and(mask, clip.masks[k] == i).sum() / np.logical_or(mask, clip.masks[k] == i).sum()
            for i in (1, 2, 3)}  # fmt: skip
    best = max(ious, key=ious.get)
    return best, ious[best]


def test_a_late_object_gets_a_new_id_and_a_returning_one_its_old_id(clip):
    events = clip.events()
    enters3, back2 = events[3]["enters"][0], events[2]["enters"][0]  # 4 and 25
    results = run(clip, every=5)
    born = [(k, e["id"]) for k, r in enumerate(results) for e in r.events if e["event"] == "born"]
    assert born[:2] == [(0, 1), (0, 2)] and len(born) == 3, born
    k3, new_id = born[2]
    assert enters3 <= k3 < enters3 + 5 and new_id == 3  # found at the first re-detection after it entered
    assert owner(clip, k3, results[k3].masks[3])[0] == 3
    revived = [(k, e["id"]) for k, r in enumerate(results) for e in r.events if e["event"] == "revived"]
    assert revived and revived[0][1] == 2 and back2 <= revived[0][0] < back2 + 5, revived
    k = revived[0][0]
    assert owner(clip, k, results[k].masks[2]) == (2, pytest.approx(1.0))  # the id 2 mask is object 2 again
    # object 1 never changes id: on every frame id 1 covers object 1
    assert all(owner(clip, k, r.masks[1])[0] == 1 for k, r in enumerate(results) if 1 in r.masks)
    assert sum(1 in r.masks for r in results) >= 38


def test_without_re_detection_neither_happens(clip):
    results = run(clip, every=0)
    assert {i for r in results for i in r.masks} <= {1, 2}
    assert not any(e["event"] in ("revived",) for r in results for e in r.events)
    assert not any(e["event"] == "born" for r in results[1:] for e in r.events)


def test_a_missed_detection_hides_the_object_until_it_is_found_again_with_its_id(clip):
    detector = Oracle(clip, miss={10: {1}})
    results = run(clip, every=5, detector=detector)
    assert detector.calls == [5, 10, 15, 20, 25, 30, 35]
    assert 1 not in results[10].masks and results[10].info[1]["reason"] == "not re-detected"
    assert all(1 not in results[k].masks for k in range(10, 15))  # hidden, not dropped ...
    assert 1 in results[15].masks and results[15].info[1]["reason"] == "revived"  # ... and back, same id
    assert owner(clip, 15, results[15].masks[1]) == (1, pytest.approx(1.0))
    assert [e["event"] for e in results[10].events if e["id"] == 1] == ["lost"]
    assert max(i for r in results for i in r.masks) == 3  # no id was spent on the miss


def test_match_score_forgives_a_drifted_mask_by_its_box():
    a = np.zeros((50, 50), bool)
    a[10:30, 10:30] = True
    ring = a.copy()
    ring[14:26, 14:26] = False  # the same object's outline only: low mask IoU, same box
    assert match_score(a, ring) == pytest.approx(1.0)
    far = np.zeros_like(a)
    far[35:45, 35:45] = True
    assert match_score(a, far) == 0.0


def far_return_clip():
    """30 frames: object 1 (red) at the top left until frame 9, out of view for 10 frames, back at the
    bottom right from frame 20, nowhere near where it left; object 2 (blue) stays in the middle."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    grey = rng.integers(90, 140, (120, 160, 1), dtype=np.uint8).repeat(3, axis=2)  # no hue to speak of
    red = np.stack([rng.integers(180, 255, (20, 20)), rng.integers(0, 60, (20, 20)), rng.integers(0, 60, (20, 20))], -1)
    blue = red[..., ::-1]
    frames, masks = np.empty((30, 120, 160, 3), np.uint8), np.zeros((30, 120, 160), np.uint8)
    for k in range(30):
        frames[k], m = grey, masks[k]
        m[50:70, 70:90] = 2
        if k < 10:
            m[10:30, 10:30] = 1
        elif k >= 20:
            m[90:110, 130:150] = 1
        for i, patch in ((1, red), (2, blue)):
            if (m == i).any():
                frames[k][m == i] = patch.reshape(-1, 3)
    return SimpleNamespace(frames=frames, masks=masks)


@pytest.mark.parametrize("by_looks", [True, False])
def test_an_object_back_far_from_where_it_left_is_known_by_its_looks_alone(by_looks):
    """Place cannot match it (no overlap, no box in common with its last mask): only its colour
    histogram can, and with appearance matching made impossible the same detection starts a new id."""
    clip = far_return_clip()
    first = {i: clip.masks[0] == i for i in (1, 2)}
    redetect = {"every": 5, "match_iou": 0.5, "min_similarity": 0.8 if by_looks else 1.01}
    results = list(propagate(iter(clip.frames), first, OracleRefiner(clip), FLOW, dict(BOUNDS, refine=True), 0,
                             Oracle(clip), redetect))  # fmt: skip
    assert all(1 not in results[k].masks for k in range(10, 20))  # out of view
    assert match_score(clip.masks[20] == 1, results[9].masks[1]) == 0.0  # place says nothing
    events = [(k, e["event"], e["id"]) for k, r in enumerate(results) for e in r.events if k > 0]
    if by_looks:
        assert (20, "revived", 1) in events and not [e for e in events if e[1] == "born"], events
        assert results[20].info[1]["reason"] == "revived"
        assert np.array_equal(results[29].masks[1], clip.masks[29] == 1)
    else:
        assert (20, "born", 3) in events and not [e for e in events if e[1] == "revived"], events
        assert 1 not in results[29].masks and np.array_equal(results[29].masks[3], clip.masks[29] == 1)


# ------------------------------------------------------------------------------------ ids that hold


def test_the_identity_scorer_counts_a_switch_and_scores_idf1():
    """One object in view for 4 frames, tracked as id 7 on frames 0-1 and as id 9 on frames 2-3:
    one ID switch; the best one-to-one id correspondence covers 2 of 4 frames on each side, so
    IDF1 = 2 * 2 / (2 * 2 + 2 + 2) = 0.5 (HOTA below); a prediction that overlaps by less than IoU 0.5 is no pair."""
    from vispipe.segment.evaluation.vos import identity

    gt = [np.zeros((20, 20), np.uint8) for _ in range(4)]
    for g in gt:
        g[5:15, 5:15] = 1
    pred = [g.copy() * (7 if k < 2 else 9) for k, g in enumerate(gt)]
    got = identity(pred, gt)
    assert (got["id_switches"], got["idf1"], got["objects"], got["predicted_ids"]) == (1, 0.5, 1, 2)
    # HOTA: every frame detected exactly (DetA 1); each match's id pair covers 2 of the object's 4
    # frames and of its predicted id's 2, so AssA = 2 / (4 + 2 - 2) = 0.5 and HOTA = sqrt(1 * 0.5)
    assert (got["deta"], got["assa"]) == (1.0, 0.5) and got["hota"] == pytest.approx(0.5**0.5)
    held = identity([g * 7 for g in gt], gt)
    assert (held["idf1"], held["id_switches"], held["hota"]) == (1.0, 0, 1.0)
    shifted = [np.roll(p, 6, axis=1) for p in pred]  # IoU 4/16 with the truth
    assert identity(shifted, gt)["idf1"] == 0.0


def test_the_identity_counts_equal_motmetrics_on_random_sequences():
    """The scorer counts the CLEAR MOT and ID measures frame by frame (in memory that does not grow
    with the video) instead of keeping py-motmetrics' event table: on random sequences (objects and
    predictions coming and going, pairs allowed or not, kept pairings, switches, gaps) every number
    equals motmetrics' own."""
    import motmetrics as mm

    from vispipe.segment.evaluation.vos import MotCounts

    names = {"idf1": "idf1", "idp": "idp", "idr": "idr", "num_switches": "id_switches", "mota": "mota",
             "num_fragmentations": "fragmentations", "num_unique_objects": "objects"}  # fmt: skip
    rng = np.random.default_rng(0)
    switches = fragmentations = 0
    for trial in range(150):
        acc, counts = mm.MOTAccumulator(auto_id=True), MotCounts()
        n_obj, n_hyp = rng.integers(0, 5), rng.integers(0, 6)
        for _ in range(rng.integers(1, 30)):
            oids = sorted(rng.choice(np.arange(1, n_obj + 1), rng.integers(0, n_obj + 1), replace=False).tolist())
            hids = sorted(rng.choice(np.arange(1, n_hyp + 1), rng.integers(0, n_hyp + 1), replace=False).tolist())
            dist = rng.random((len(oids), len(hids)))
            dist[rng.random(dist.shape) < 0.5] = np.nan
            acc.update(oids, hids, dist)
            counts.update(oids, hids, dist)
        want = mm.metrics.create().compute(acc, metrics=list(names), name="v").iloc[0]
        got = counts.metrics()
        for key, name in names.items():
            assert float(got[name]) == pytest.approx(float(want[key]), nan_ok=True), (trial, name)
        switches, fragmentations = switches + got["id_switches"], fragmentations + got["fragmentations"]
    assert switches > 50 and fragmentations > 50  # the sequences exercise both


def oracle_ids(clip, every: int) -> tuple[dict, list, list]:
    """The warp-only flow propagator with a perfect detector re-detecting every ``every`` frames:
    the identity scores against the truth, the events and the frames' results."""
    from vispipe.segment.evaluation.vos import identity
    from vispipe.segment.files.masks import id_mask

    first = {i: clip.masks[0] == i for i in np.unique(clip.masks[0]) if i}
    redetect = {"every": every, "match_iou": 0.5, "min_similarity": 0.8}
    results = list(propagate(iter(clip.frames), first, None, FLOW, BOUNDS, 0, Oracle(clip), redetect))
    pred = [id_mask(r.masks, clip.masks[0].shape) for r in results]  # as the id PNGs are painted
    events = [(k, e["event"], e["id"]) for k, r in enumerate(results) for e in r.events if k > 0]
    return identity(pred, list(clip.masks)), events, results


@pytest.mark.parametrize("every", [10, 20])
@pytest.mark.parametrize("n, seed", [(40, 0), (60, 1)])
def test_ids_hold_between_sparse_re_detections(every, n, seed):
    """The issue's goal: with a perfect detector and warp only (the masks drift between detections),
    no ID switch while an object stays in view, and the old id on its return. Matching by place alone
    gave 5-6 ids for the 3 objects and 2-3 switches at every 10 and 20 on these clips; the motion
    since the last anchor, and looks for every instance, keep the three."""
    clip = make_clip(n, seed=seed)
    scores, events, results = oracle_ids(clip, every)
    assert scores["id_switches"] == 0 and scores["predicted_ids"] == scores["objects"] == 3, (scores, events)
    assert [i for _, e, i in events if e == "born"] == [3]  # the late object, once
    two = clip.events()[2]
    assert two["leaves"] and two["enters"]  # object 2 leaves the view and comes back: at every
    back = [k for k in two["visible"] if k >= two["enters"][0] and k % every == 0]  # re-detection after,
    assert all(owner(clip, k, results[k].masks[2]) == (2, 1.0) for k in back)  # id 2 is object 2 again
    assert back or (n, every) == (40, 20)  # (the 40-frame clip ends before a re-detection at 20 sees it back)
