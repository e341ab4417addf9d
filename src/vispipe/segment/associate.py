"""Re-identification: which instance a detection is, whether in view, hidden or lost.

Re-detection (``segment.redetect.every: N``): on every N-th frame a detector (the configured one ->
instances -> SAM2, as on the first frame) runs too, and its masks are matched one to one (Hungarian)
with every instance the video has had, whether it is in view, hidden, or lost for good, as trackers
match (SORT's motion, DeepSORT's appearance) on two cues, for every instance alike:

- where: :func:`match_score` against the instance's mask (in view: this frame's; out of view:
  carried forward while hidden, else the last one seen), or the box IoU with where its motion puts
  it: the box of its last anchor (a detection that confirmed it) moved by its corners since
  (:meth:`Association.track_points`), or, once they are lost, moved on at the velocity between its
  last two anchors, or at the velocity measured over the frames right after the last anchor
  (:class:`Motion`: there from the first anchor on), since a propagated mask drifts and lags
  between detections;
- what: colour histograms (:func:`appearance`) of the detection and of the instance at its last
  anchors (the best of up to five), at least ``min_similarity`` alike. A view cut by the frame's
  edge (:func:`whole`) gives way to the first whole one. Looks also say no: a detection and an
  instance's whole views less than :data:`VETO` alike are two objects whatever their places (the
  detection seen whole, or at least :data:`VIEW_SHARE` of the instance's size: a sliver at the edge
  may show one part's colours only). Colours say what an object is made of, not which one of two
  look-alikes it is; where a detection has more than one candidate (or an instance), its surface
  does: a pair whose grey pixels correlate (:func:`texture_match`, at their best shift, over the
  part both views show) as one surface seen again gains as much as a place (:meth:`Association.
  same_surface`). It only adds: a surface that turned, bent or blurred says nothing.

Between detections the loop asks every mask in view whether it still looks like its instance
(:meth:`Association.drifting`): a mask with less than :data:`DRIFT_SHARE` of its pixels in colours
of its instance (:func:`coverage`) has left its object (the flow lost a fast object, or dragged the
mask onto another one), and is hidden ("lost", "drifted") rather than shown on the wrong pixels. At
the next re-detection such an instance is matched as if out of view: its mask is no place, its
looks may find it anywhere.

And on those frames the loop follows every instance in view or adrift by its colours
(:meth:`Association.follow`: mean shift on the back-projection of its ratio histogram, from where
its velocity puts it, as CamShift follows an object), whatever its mask does: the flow loses fast
objects within a few frames, a colour window does not, and the motion it measures survives bounces
and reversals that the anchors' velocity knows nothing of. A follow that misses once has ended until
the next anchor (its window may find the colours again on a look-alike), and of two finds on one
place the one that moved farther from its guess counts as a miss. At the re-detection a find from
the last :data:`FOLLOW_FRESH` frames, moved on at its velocity, is the instance's place instead of
its anchor's guesses.

Its corners are the first of those places: at every anchor the loop finds corners (Shi and
Tomasi's) inside the instance's mask, :data:`POINTS_INSIDE` px off its edges (a corner on the edge
of an object hiding this one is made by that edge, and moves with it), and tracks them on the
frames (pyramidal Lucas-Kanade, checked forward and back, as KLT trackers and Kalal's median flow
do), whatever the tracker does with the masks. Their median step since the anchor is the instance's
place while they last, and over the first :data:`FLOWED_FRAMES` frames its ``flowed`` velocity (for
a view cut by the edge too: its corners move with it). They stay on their own texture where the
colours of two look-alikes are one, and a warped mask smears and lags. An object thinner than the
tracking window gets none (they would follow what is around it); its flowed velocity is then its
mask's trail: its box's centre, or, along an axis where an edge of the frame cuts the box (an object
coming in or going out), its side away from that edge (:func:`velocity`).

A pair may match when it agrees by place (>= ``match_iou``), or when it looks alike and is near: out
of view (an object that comes back rarely comes back where it left; but see below for one followed
out of the frame), or in view with the detection's centre within reach of the instance's (its mask's
or its motion's): one size of the instance at its last anchor, plus a quarter of one per frame
since. Among those, the Hungarian assignment maximises place (where it reaches ``match_iou``: below,
an overlap is noise) + likeness + half of :func:`agreement` (shape and distance: what tells
look-alikes apart; a side of a view cut by the frame's edge is a least size,
:func:`shape_agreement`). An instance out of view (or adrift) that was seen leaving (its last place
touched an edge while it moved towards it) has two more places for that distance
(:meth:`Association.returns`): where it left, and the same place on the opposite edge (objects come
back the way they left, or go on through the other side); among look-alikes out of view, that is
what tells which one came back. A detection whose box is unlike the instance's at a whole anchor
(:data:`PLACE_SHAPE`) is not where the instance's mask is: a mask can drift inside a larger
look-alike, where colours cannot see it (a partial anchor's box, cut by the edge, is not the
object's shape, and rules nothing out). Nor are looks alone enough for an instance out of view (or
adrift), seen whole at its anchor, and a detection whose boxes are unlike, the detection longer on
one side than any clear view of that side of the instance (:meth:`Association.two_shapes`): a thin
look-alike is not the object that left. A side is seen clear when the view is whole and no other
mask touching it reaches beyond it along that side (the object may go on behind another only within
it, :func:`hidden_sides`). Being hidden in part or cut by an edge only shortens a side, so this
holds for a detection cut by the edge too.

An instance out of view (or adrift) may be anywhere, but for one followed out of the frame
(:meth:`Association.ways_out`: its colours were found since its anchor, where the anchor's motion
put it, and the next guess lay past an edge, its velocity mostly through it). It comes back only
within reach of where it left (:meth:`Association.back_within`), at its fastest speed seen: where
its velocity takes it had it turned at the edge, or from where it left, or through the same place
on the opposite edge once its last part had left (one object is not at two edges at once). A
look-alike entering elsewhere while it is away is another object. A detection that finds it still
cut by the edge it was followed out by does not undo that: it is still leaving.

Then a second association for what the first left (ByteTrack's second stage; OC-SORT's recovery from
the last observation): an instance in view (or adrift: its mask drifted off since its last
anchor) and a detection, both unmatched, that are each other's only candidate are one object. A
candidate looks alike by the instance's whole views, anywhere (a mask the flow lost, stuck where it
was left), or, with no whole view to ask, is within twice the reach. A partial view never vetoes
here, which is what let a fast object entering at an edge, whose first looks were a third of it,
keep its id. A detection that is a sliver of the instance at the edge (:meth:`Association.sliver`:
its colours may be one part's) is a candidate only where it lies on the instance's mask (or, the
mask dropped as adrift, on its last find by colours moved on): an object leaving by an edge keeps
its id to the last pixels.

A detection that matches an instance in view re-anchors it (``re-detected``); one that matches an
instance out of view brings it back **with its old id** (``revived``); one that matches nothing
starts a new id (``born``). An instance in view that no detection matches is hidden (``lost``, "not
re-detected"), its mask carried on, until a later detection finds it. Every birth, loss and revival
is an event of its frame.

At a hard scene cut (:class:`SceneCuts`: the frames' colour histograms jump, ``segment.redetect.
scene_cut``) place and motion say nothing: the loop hides every instance ("scene cut"), the
detector runs on that frame, and looks alone match (revived with "scene cut: by looks alone").

:class:`Association` keeps what this needs of every instance (its last visible mask, its looks at its
last anchors, its motion between them) and matches one frame's detections with them; the generic loop
(:mod:`.track.loop`) runs it for every tracker. SAM 3's tracker maps its own ids onto ours with
:func:`map_ids`, the same assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
from scipy.signal import fftconvolve

from .geometry import assign, box_area, box_iou, box_xyxy, mask_iou
from .types import FrameResult, instance_info


def match_score(detection: np.ndarray, track: np.ndarray) -> float:
    """How well a detection and a track's mask agree that they are one object: the largest of mask
    IoU, box IoU (forgives a mask that drifted or lost its inside) and the share of the track's mask
    inside the detection (an object coming into view grows faster than its warped mask)."""
    if not detection.any() or not track.any():
        return 0.0
    inter = np.logical_and(detection, track).sum()
    return float(max(mask_iou(detection, track), box_iou(box_xyxy(detection), box_xyxy(track)), inter / track.sum()))


def velocity(before, after, frames: int, shape: tuple[int, int] | None = None) -> tuple[float, float]:
    """How fast a box's centre moved from ``before`` to ``after`` (xyxy boxes ``frames`` apart), in
    pixels per frame. Given the frame's ``shape`` (height, width), along an axis where one edge of
    the frame cuts both boxes, by their side away from that edge: the side at the edge is the
    frame's, and the centre of an object coming in (or going out) moves at half its speed."""
    out = []
    for axis in (0, 1):
        lo, hi = (before[axis], after[axis]), (before[axis + 2], after[axis + 2])
        lo_cut = shape is not None and max(lo) <= EDGE
        hi_cut = shape is not None and min(hi) >= shape[1 - axis] - EDGE
        if lo_cut != hi_cut:
            side = hi if lo_cut else lo  # the side away from the edge that cuts both
            out.append((side[1] - side[0]) / frames)
        else:
            out.append((lo[1] + hi[1] - lo[0] - hi[0]) / 2 / frames)
    return out[0], out[1]


@dataclass(frozen=True)
class Motion:
    """An instance's last anchor (frame and box) and two velocities of its box centre, in pixels per
    frame: between its last two anchors (``velocity``, as SORT's Kalman filter estimates one), and
    over the frames right after the last anchor (``flowed``: there from the first anchor on, before a
    second one gives ``velocity``; its corners' median step, else its mask's box as the propagator
    moved it). Each gives a constant-velocity guess of where the instance is now."""

    frame: int
    box: tuple[int, int, int, int] | list[int]
    velocity: tuple[float, float] | None = None
    flowed: tuple[float, float] | None = None
    whole: bool = True  # the anchor saw it whole: its box is the object's shape (not one cut by an edge)
    leaving: bool = False  # followed out of the frame before this anchor, which saw it cut by an edge
    fastest: float = 0.0  # px/frame: the fastest it was seen moving before this anchor

    def anchored(self, frame: int, box, seen_whole: bool = True, leaving: bool = False, followed=None) -> Motion:
        """The motion after a new anchor on ``frame`` (its flowed velocity is measured anew; ``followed``:
        the velocity its colours moved at since the last anchor, if they were followed)."""
        v = velocity(self.box, box, max(frame - self.frame, 1))
        seen = [w for w in (self.velocity, self.flowed, followed, v) if w is not None]
        fastest = max([self.fastest, *(float(np.hypot(*w)) for w in seen)])
        return Motion(frame, box, v, whole=seen_whole, leaving=leaving, fastest=fastest)

    def guesses(self, frame: int) -> list[tuple[float, float, float, float]]:
        """Where the instance's box is on ``frame``: the last anchor's box moved on at each velocity
        known (the box itself when none is)."""
        x0, y0, x1, y1 = self.box
        out = []
        for v in (self.velocity, self.flowed):
            if v is not None:
                dx, dy = (c * (frame - self.frame) for c in v)
                out.append((x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        return out or [tuple(self.box)]


@dataclass(frozen=True)
class Followed:
    """Where :meth:`Association.follow` last found an instance by its colours: on ``frame``, its
    ``box`` (xyxy, floats), moving at ``velocity`` (pixels per frame); ``mass``: how strongly its
    colours filled its box at its anchor (the back-projection's mean), what a find is held to."""

    frame: int
    box: tuple[float, float, float, float]
    velocity: tuple[float, float]
    mass: float

    def guess(self, frame: int) -> tuple[float, float, float, float]:
        """Its box on ``frame``, moved on at its velocity."""
        dx, dy = (c * (frame - self.frame) for c in self.velocity)
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def fresh(self, frame: int) -> bool:
        """Whether its last find is recent enough (:data:`FOLLOW_FRESH`) to place it on ``frame``."""
        return frame - self.frame <= FOLLOW_FRESH

    def found(self, frame: int, box) -> Followed:
        """Found again on ``frame`` at ``box``: its velocity smoothed towards the step since."""
        dt = frame - self.frame
        step = velocity(self.box, box, dt)
        v = tuple(FOLLOW_SMOOTH * s + (1 - FOLLOW_SMOOTH) * o for s, o in zip(step, self.velocity))
        return Followed(frame, tuple(box), v, self.mass)


GALLERY = 5  # the looks an instance keeps: those of its last anchors
REACH_PER_FRAME = 0.25  # how far an instance may have moved per frame since its last anchor, in its own sizes
SECOND_REACH_PER_FRAME = 0.5  # the same, for the second association (what the first left unmatched)
FLOWED_FRAMES = 3  # frames after an anchor over which the propagator's motion of the mask is measured
POINTS = 40  # corners tracked per instance from its anchor on (:meth:`Association.track_points`)
POINTS_LEAST = 3  # fewer corners left than this measure no motion (the mask's trail does)
POINTS_BACK = 1.0  # px: a corner tracked forward and back this far from where it started is an outlier
LK = {"winSize": (15, 15), "maxLevel": 3, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
# px: corners this far inside their mask, so that what makes one a corner (Shi-Tomasi's 3 x 3 block of
# 3 x 3 gradients) lies on the object, not on the edge of another one hiding it
POINTS_INSIDE = 3
TIE = 0.5  # the weight of :func:`agreement` (shape and distance) beside place and looks
VETO = 0.3  # looks less alike than this, seen whole, say two objects whatever the place
PLACE_SHAPE = 0.25  # a detection less like the instance's box at its anchor than this is not where its mask is
DRIFT_SHARE = 0.4  # a mask with fewer of its pixels in its instance's colours has left the object
PRESENT = 0.05  # a colour bin with this share of a histogram's largest is a colour the view shows
VIEW_SHARE = 0.25  # a partial view this large (of the instance's box at its anchor) may veto by looks
FOLLOW_MASS = 0.5  # a find whose colours fill its box less than this share of the anchor's is no find
FOLLOW_FRESH = 2  # frames: a find this recent replaces the anchor's guesses at a re-detection
FOLLOW_OVERLAP = 0.3  # two finds overlapping this much (box IoU) are one place: one of them was pulled there
FOLLOW_SMOOTH = 0.5  # the weight of the newest step in a followed velocity
FOLLOW_STEADY = 5  # frames: a follow with nothing else to check it is trusted after this many finds in a row
FOLLOW_SEARCH = 1  # mean shift searches its window widened by this many of its sizes on each side
MEAN_SHIFT = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 1)  # at most 10 steps, or until one is < 1 px
OUTWARD = 0.5  # leaving: at least this share of its speed goes through the edge
EDGE = 1  # px: a box this near an edge of the frame touches it (the object may have left by it)
TEXTURE = 0.98  # grey pixels this correlated (at their best shift) are one object's surface, seen again
TEXTURE_OVERLAP = 0.3  # ... over at least this share of the smaller view (and TEXTURE_LEAST pixels)
TEXTURE_LEAST = 64  # px
GROWN = 1.25  # a side this much longer than any clear view of an instance has is another object's
SCENE_CUT = 0.5  # default segment.redetect.scene_cut: hue-saturation-value histogram distance of two frames


def near(box, other, frames: int, per_frame: float = REACH_PER_FRAME, size: float | None = None) -> bool:
    """Whether ``box``'s centre is within reach of ``other``'s: one ``size`` (default: ``other``'s
    larger side), plus ``per_frame`` of it per frame since the instance's last anchor (the longer the
    wait, the farther it may have gone, as a tracker's gate widens with its uncertainty)."""
    dx = (box[0] + box[2] - other[0] - other[2]) / 2
    dy = (box[1] + box[3] - other[1] - other[3]) / 2
    size = max(other[2] - other[0], other[3] - other[1]) if size is None else size
    return bool(np.hypot(dx, dy) <= size * (1 + per_frame * frames))


def fold(c: float, lo: float, hi: float) -> float:
    """Where a point moving along one axis to ``c`` is, reflected at walls ``lo`` and ``hi``."""
    if hi <= lo:
        return (lo + hi) / 2
    period = 2 * (hi - lo)
    t = (c - lo) % period
    return lo + (t if t <= hi - lo else period - t)


def within(point, guess, size: float, v, frames: int) -> bool:
    """Whether ``point`` (x, y) is within reach of ``guess``, a place a constant velocity ``v`` gave
    ``frames`` frames on: half an object's ``size``, plus :data:`REACH_PER_FRAME` of the way moved
    (the longer the guess runs, the more its error)."""
    reach = size / 2 + REACH_PER_FRAME * float(np.hypot(*v)) * frames
    return bool(np.hypot(point[0] - guess[0], point[1] - guess[1]) <= reach)


def on_edge(edge: int, along: float, shape: tuple[int, int]) -> tuple[float, float]:
    """The point of a frame's ``edge`` (0 left, 1 right, 2 top, 3 bottom) at ``along`` (its x on the
    top or bottom, its y on the sides), for a frame of ``shape`` (height, width)."""
    H, W = shape
    return ((0.0, along), (float(W), along), (along, 0.0), (along, float(H)))[edge]


def inward(box, edge: int, shape: tuple[int, int]) -> float:
    """How far ``box`` reaches into a frame of ``shape`` (height, width) from its ``edge`` (0 left, 1
    right, 2 top, 3 bottom): its side farthest from that edge, measured from it."""
    H, W = shape
    return float((box[2], W - box[0], box[3], H - box[1])[edge])


def came_in(box, edge: int, along: float, shape: tuple[int, int], half: float, moved: float) -> bool:
    """Whether ``box`` may be an object that was wholly past a frame's ``edge`` (0 left, 1 right, 2
    top, 3 bottom; the frame's ``shape`` is height, width) at ``along`` (its centre's x on the top or
    bottom, its y on the sides) and has since moved ``moved`` px at most: the box's far side from
    the edge no deeper, and its centre along the edge no farther than that plus ``half`` a size."""
    centre = (box[1] + box[3]) / 2 if edge < 2 else (box[0] + box[2]) / 2
    return moved > 0 and bool(np.hypot(max(abs(centre - along) - half, 0.0), inward(box, edge, shape)) <= moved)


def box_side(box, axis: int, limit: int | None) -> tuple[float, bool]:
    """A box's width (``axis`` 0) or height (1), and whether an edge of a frame ``limit`` pixels
    across (None: unknown) cuts it: then it is only a least size of the object."""
    lo, hi = box[axis], box[axis + 2]
    return hi - lo, limit is not None and (lo <= EDGE or hi >= limit - EDGE)


def shape_agreement(box, anchor, frame: tuple[int, int] | None = None) -> float:
    """How alike two boxes' widths and heights are, in [0, 1] (1: the same size and aspect ratio).
    Given the ``frame``'s height and width, a side cut by an edge is a least size: it agrees with any
    uncut size at least as large, and a smaller one by their ratio (two cut sides always agree). A
    thin object's 3 px sliver entering at the top is then like its whole view, and a large object's
    cut view still unlike a thin one."""
    out = 1.0
    for axis in (0, 1):
        limit = None if frame is None else frame[1 - axis]
        (a, a_cut), (b, b_cut) = box_side(box, axis, limit), box_side(anchor, axis, limit)
        if a_cut and b_cut:
            continue
        if a_cut or b_cut:
            least, uncut = (a, b) if a_cut else (b, a)
            out *= min(uncut / max(least, 1), 1.0)
        else:
            out *= min(a, b) / max(a, b, 1)
    return float(out)


def agreement(box, anchor, places, frame: tuple[int, int] | None = None) -> float:
    """How well a detection's ``box`` fits an instance beyond the gates, in [0, 1], to tell objects that
    look alike apart: its width and height against the instance's at its last ``anchor`` (shape, as
    SORT's state keeps scale and aspect ratio; sides cut by the edges of a ``frame`` of that height
    and width are least sizes), and how close its centre is to the nearest of the instance's
    ``places``, in the instance's sizes."""
    shape = shape_agreement(box, anchor, frame)
    size = max(anchor[2] - anchor[0], anchor[3] - anchor[1], 1)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    d = min((np.hypot(cx - (p[0] + p[2]) / 2, cy - (p[1] + p[3]) / 2) for p in places), default=np.inf)
    return float(shape + 1 / (1 + d / size)) / 2


def appearance(image: np.ndarray, mask: np.ndarray, hsv: np.ndarray | None = None) -> np.ndarray:
    """What an object looks like, position aside: its pixels' hue-saturation histogram (16 x 8 bins);
    ``hsv``: the image already in HSV (one conversion for all the masks of a frame)."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV) if hsv is None else hsv
    hist = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, None).flatten()


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 for the same colour distribution, 0 for disjoint ones (1 - Bhattacharyya distance)."""
    if not a.any() or not b.any():
        return 0.0
    return float(1 - cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def texture(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What an object's surface looks like: its box's grey pixels (uint8, as an instance keeps five of
    them), and its mask there."""
    x0, y0, x1, y1 = box_xyxy(mask)
    return cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY), mask[y0:y1, x0:x1].copy()


def texture_match(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float | None:
    """How alike two views' surfaces (:func:`texture`) are where they overlap: the best normalised
    cross-correlation of their grey pixels over all shifts, each counted over the pixels both masks
    cover (Padfield's masked correlation, in the Fourier domain), as correlation trackers match a
    template; among shifts where that overlap is at least :data:`TEXTURE_OVERLAP` of the smaller
    view and :data:`TEXTURE_LEAST` pixels. None when no shift overlaps that much (a sliver, or two
    parts of an object that do not meet)."""
    (f, fm), (g, gm) = (tuple(x.astype(np.float64) for x in view) for view in (a, b))
    need = max(TEXTURE_LEAST, TEXTURE_OVERLAP * min(fm.sum(), gm.sum()))
    if min(fm.sum(), gm.sum()) < need:
        return None
    f, g, gm = f * fm, (g * gm)[::-1, ::-1], gm[::-1, ::-1]  # correlation: convolution with g flipped
    n = np.round(fftconvolve(fm, gm))
    sf, sg = fftconvolve(f, gm), fftconvolve(fm, g)
    sff, sgg, sfg = fftconvolve(f * f, gm), fftconvolve(fm, g * g), fftconvolve(f, g)
    ok = n >= need
    n = np.maximum(n, 1)
    var = np.maximum((sff - sf**2 / n) * (sgg - sg**2 / n), 0)
    ok &= var > n**2  # a flat overlap (grey spread under 1 level) correlates with nothing
    if not ok.any():
        return None
    return float(((sfg - sf * sg / n) / np.sqrt(np.maximum(var, 1e-12)))[ok].max())


def coverage(look: np.ndarray, view: np.ndarray) -> float:
    """The share of the pixels behind histogram ``look`` whose colours ``view`` shows (its bins with
    at least :data:`PRESENT` of its largest): 1 when they all do, 0 when none does."""
    total = look.sum()
    return float(look[view > PRESENT * view.max()].sum() / total) if total > 0 else 0.0


def whole(mask: np.ndarray) -> bool:
    """Whether the object was seen whole: its mask keeps off the frame's edges (one cut by an edge is
    a partial view, whose colours may not be the object's)."""
    return not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def hidden_sides(mask: np.ndarray, others: list[np.ndarray]) -> tuple[bool, bool]:
    """Whether another object may hide part of a mask's width, and of its height: a mask of
    ``others`` touches it and reaches beyond its box along that side. The object may go on behind
    another only within that other's pixels: one touching its bottom, no wider than it, may hide
    more of its height, none of its width."""
    H, W = mask.shape
    x0, y0, x1, y1 = box_xyxy(mask)
    a0, b0, a1, b1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, W), min(y1 + 1, H)
    near = cv2.dilate(mask[b0:b1, a0:a1].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    width = height = False
    for m in others:
        if (near & m[b0:b1, a0:a1]).any():
            o0, p0, o1, p1 = box_xyxy(m)
            width, height = width or o0 < x0 or o1 > x1, height or p0 < y0 or p1 > y1
    return bool(width), bool(height)


def frame_histogram(image: np.ndarray) -> np.ndarray:
    """A whole frame's hue-saturation-value histogram (16 x 4 x 4 bins, on a 64 x 36 thumbnail)."""
    small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([cv2.cvtColor(small, cv2.COLOR_RGB2HSV)], [0, 1, 2], None, [16, 4, 4],
                        [0, 180, 0, 256, 0, 256])  # fmt: skip
    return cv2.normalize(hist, None).flatten()


class SceneCuts:
    """Hard cuts, as content-based shot detectors find them: the colour histograms of two consecutive
    frames more than ``threshold`` apart (Bhattacharyya distance; measured: at most 0.2 between the
    frames of one shot on the synthetic clips, 0.1 on the demo video, at least 0.85 across a cut);
    ``threshold`` None finds none."""

    def __init__(self, image: np.ndarray, threshold: float | None):
        self.threshold = threshold
        self.last = frame_histogram(image) if threshold is not None else None

    def __call__(self, image: np.ndarray) -> bool:
        """Whether ``image`` starts a new shot (it becomes the frame the next one is compared with)."""
        if self.threshold is None:
            return False
        hist = frame_histogram(image)
        previous, self.last = self.last, hist
        return cv2.compareHist(previous, hist, cv2.HISTCMP_BHATTACHARYYA) > self.threshold


class Association:
    """Each instance's last visible mask, its looks at its last anchors (with ``looks``; a gallery, as
    DeepSORT keeps one, of (histogram, seen whole) pairs: a partial view, at an edge, gives way to the
    first whole one, and never vetoes a match) and how it moved (:class:`Motion`), from the first
    frame's ``first`` instances on; ``cfg`` is the ``segment.redetect`` block."""

    def __init__(self, image: np.ndarray, first: dict[int, np.ndarray], cfg: dict, looks: bool = True):
        self.cfg = cfg
        self.last_seen = dict(first)
        self.by_looks = looks and cfg.get("min_similarity", 0.8) < 1  # 1 turns appearance matching off
        hsv = self.hsv(image)
        self.looks = {i: [(appearance(image, m, hsv), whole(m))] for i, m in first.items()} if self.by_looks else {}
        self.textures = {i: [texture(image, m)] for i, m in first.items()} if self.by_looks else {}
        self.extent: dict[int, tuple[int, int]] = {}  # its longest width and height seen clear (0: never)
        self.widen(first)
        self.motion = {i: Motion(0, box_xyxy(m), whole=whole(m)) for i, m in first.items()}
        self.trail: dict[int, list] = {i: [box_xyxy(m)] for i, m in first.items()}  # boxes since the anchor
        self.adrift: set[int] = set()  # instances whose mask left their object since their last anchor
        self.followed: dict[int, Followed] = {}
        self.exits: dict[int, tuple[Followed, list]] = {}  # followed out of the frame: last find, ways out
        self.models: dict[int, np.ndarray] = {}
        self.gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # the last frame, for the corners' flow
        self.points: dict[int, tuple] = {}  # instance -> (its corners at its last anchor, the same now)
        self.start_points(self.gray, first)
        if self.by_looks:
            self.start_following(0, hsv, first)

    def seen(self, i: int, mask: np.ndarray, k: int) -> None:
        """Instance ``i`` is visible with ``mask`` on frame ``k``: over the first frames after its
        anchor, the propagator's motion of its mask gives its flowed velocity, unless corners do."""
        self.last_seen[i] = mask
        if i in self.points:
            return  # its corners measure its motion
        trail, motion = self.trail.get(i), self.motion.get(i)
        if trail is None or motion is None or k != motion.frame + len(trail):
            return  # not the next frame after the anchor: the trail has ended (or was broken)
        trail.append(box_xyxy(mask))
        if len(trail) > FLOWED_FRAMES:
            self.trail[i] = None
        self.motion[i] = replace(motion, flowed=velocity(trail[0], trail[-1], len(trail) - 1, mask.shape))

    def anchored(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray], hsv: np.ndarray | None = None) -> None:
        """Detections confirmed these instances on frame ``k``, after :meth:`track_points` on it: their
        looks and motion are renewed (``hsv``: the frame in HSV, if at hand)."""
        if masks and hsv is None:
            hsv = self.hsv(frame)
        for i, mask in masks.items():
            if self.by_looks:
                view = (appearance(frame, mask, hsv), whole(mask))
                kept = [v for v in self.looks.get(i, []) if v[1] or not view[1]]  # a whole view replaces partial ones
                self.looks[i] = [*kept[-(GALLERY - 1) :], view]
                self.textures[i] = [*self.textures.get(i, [])[-(GALLERY - 1) :], texture(frame, mask)]
            box, seen_whole = box_xyxy(mask), whole(mask)
            leaving = i in self.exits and not seen_whole  # followed out, and found still at an edge: still leaving
            followed = self.followed[i].velocity if i in self.followed else None
            self.motion[i] = (
                self.motion[i].anchored(k, box, seen_whole, leaving, followed)
                if i in self.motion
                else Motion(k, box, whole=seen_whole)
            )
            self.trail[i] = [box]
            self.adrift.discard(i)
            self.exits.pop(i, None)
        if masks:
            self.widen(masks)
            self.start_points(self.gray, masks)  # frame k in grey: track_points converted it
        if self.by_looks and masks:
            self.start_following(k, hsv, masks)

    def widen(self, masks: dict[int, np.ndarray]) -> None:
        """These instances were seen together with ``masks``: each one seen whole lengthens its
        :attr:`extent` where longer, along each side no other mask may hide part of
        (:func:`hidden_sides`)."""
        for i, mask in masks.items():
            if not whole(mask):
                continue
            hidden = hidden_sides(mask, [m for j, m in masks.items() if j != i])
            x0, y0, x1, y1 = box_xyxy(mask)
            w, h = self.extent.get(i, (0, 0))
            w, h = (w if hidden[0] else max(w, x1 - x0)), (h if hidden[1] else max(h, y1 - y0))
            if w or h:
                self.extent[i] = (w, h)

    def start_points(self, gray: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """Corners (Shi and Tomasi's) inside each of these masks of instances anchored on this frame
        (``gray``: the frame in grey; the anchor is each instance's :class:`Motion`), tracked over the
        next frames by :meth:`track_points`."""
        for i, mask in masks.items():
            self.points.pop(i, None)
            x0, y0, x1, y1 = box_xyxy(mask)
            if min(x1 - x0, y1 - y0) < LK["winSize"][0]:
                continue  # thinner than the window Lucas-Kanade matches: its corners would follow what is around it
            # off the mask's edge: a corner where another object hides this one (a T-junction) moves
            # with the one in front. The frame's edge is no such edge: cv2.erode keeps what touches
            # the image's border, so the box is widened by the margin within the frame
            r, (h, w) = POINTS_INSIDE, mask.shape
            a0, b0, a1, b1 = max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, w), min(y1 + r, h)
            wide = cv2.erode(mask[b0:b1, a0:a1].astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))
            inside = wide[y0 - b0 : y1 - b0, x0 - a0 : x1 - a0]
            found = cv2.goodFeaturesToTrack(gray[y0:y1, x0:x1], POINTS, 0.01, 3, mask=inside)
            if found is not None and len(found) >= POINTS_LEAST:
                found = found.reshape(-1, 2) + np.float32([x0, y0])
                self.points[i] = (found, found)

    def track_points(self, k: int, frame: np.ndarray) -> None:
        """Frame ``k``: every instance's corners move on by pyramidal Lucas-Kanade from the frame before
        (one call for all; a corner that comes back more than :data:`POINTS_BACK` px from where it
        started is dropped, and an instance with fewer than :data:`POINTS_LEAST` left has lost them
        until its next anchor). Their median step since the anchor is its place (:meth:`tracked`) and,
        over the first :data:`FLOWED_FRAMES` frames, its ``flowed`` velocity and its follow's."""
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        previous, self.gray = self.gray, gray
        live = list(self.points)
        if not live:
            return
        now = np.concatenate([self.points[i][1] for i in live]).reshape(-1, 1, 2)  # one call for all instances
        ahead, ok, _ = cv2.calcOpticalFlowPyrLK(previous, gray, now, None, **LK)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(gray, previous, ahead, None, **LK)
        good = (ok.ravel() == 1) & (ok_back.ravel() == 1)
        good &= np.linalg.norm((back - now).reshape(-1, 2), axis=1) < POINTS_BACK
        ahead, end = ahead.reshape(-1, 2), np.cumsum([len(self.points[i][0]) for i in live])
        for i, stop in zip(live, end):
            first, _ = self.points.pop(i)
            kept = good[stop - len(first) : stop]
            if kept.sum() < POINTS_LEAST:
                continue  # its corners were lost (hidden, out of the frame): its motion stays as it was
            first, moved = first[kept], ahead[stop - len(first) : stop][kept]
            self.points[i] = (first, moved)
            waited = k - self.motion[i].frame
            if waited <= FLOWED_FRAMES:
                v = tuple(float(c) for c in np.median(moved - first, axis=0) / waited)
                self.motion[i] = replace(self.motion[i], flowed=v)
                if i in self.followed and self.followed[i].frame == k - 1:
                    self.followed[i] = replace(self.followed[i], velocity=v)

    def tracked(self, i: int):
        """Instance ``i``'s box on this frame by its corners (its anchor's box moved by their median step
        since), while they are tracked; else None."""
        if i not in self.points:
            return None
        first, now = self.points[i]
        dx, dy = (float(c) for c in np.median(now - first, axis=0))
        x0, y0, x1, y1 = self.motion[i].box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def start_following(self, k: int, hsv: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        """These instances are anchored on frame ``k`` (``hsv``: the frame in HSV) with ``masks``: each
        is followed from there, by its colours as a ratio histogram (Swain and Ballard's: the
        object's share of each colour in the whole frame, so that colours the background shows too
        count little), at the velocity between its last two anchors (none yet: standing)."""
        everywhere = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])  # the frame's, once
        for i, mask in masks.items():
            obj = cv2.calcHist([hsv], [0, 1], mask.astype(np.uint8), [16, 8], [0, 180, 0, 256])
            self.models[i] = (np.minimum(obj / np.maximum(everywhere, 1), 1) * 255).astype(np.float32)
            x0, y0, x1, y1 = box = box_xyxy(mask)
            mass = float(self.back_projection(i, hsv, box).mean()) if x1 > x0 and y1 > y0 else 0.0
            motion = self.motion.get(i)
            v = motion.velocity if motion is not None and motion.velocity is not None else (0.0, 0.0)
            self.followed[i] = Followed(k, tuple(float(c) for c in box), v, mass)

    def back_projection(self, i: int, hsv: np.ndarray, region=None) -> np.ndarray:
        """How much each pixel's colour is instance ``i``'s (0-255), over the frame (``hsv``) or over
        its ``region`` (x0, y0, x1, y1) alone: what follows one instance costs its region's pixels,
        not the frame's."""
        if region is not None:
            x0, y0, x1, y1 = region
            hsv = hsv[y0:y1, x0:x1]
        return cv2.calcBackProject([hsv], [0, 1], self.models[i], [0, 180, 0, 256], 1)

    def follow(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray], hsv: np.ndarray | None = None) -> None:
        """Between detections, find each instance in view (``masks``) or adrift by its colours where
        its motion puts it (mean shift on its back-projection, as CamShift follows an object, within
        its window widened by :data:`FOLLOW_SEARCH` of its sizes on each side), so that the next
        detection knows where it went even where the propagator lost it. A find must fill
        its box with the instance's colours at least :data:`FOLLOW_MASS` as much as the anchor did;
        a follow that misses once (the object hidden, left, or too fast) has ended until the next
        anchor: a window that later finds those colours again may be on a look-alike. Two finds on
        one place (:data:`FOLLOW_OVERLAP`): the one that moved farther from its guess was pulled
        there by the other's colours, and counts as a miss. ``hsv``: the frame in HSV, if at hand."""
        if not self.by_looks:
            return
        hsv = self.hsv(frame) if hsv is None else hsv
        H, W = frame.shape[:2]
        finds = {}
        for i, f in self.followed.items():
            if (i not in masks and i not in self.adrift) or k - f.frame > 1 or f.mass <= 0:
                continue  # out of view, or its follow ended
            guess = x0, y0, x1, y1 = f.guess(k)
            cx0, cy0, cx1, cy1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), W), min(int(y1), H)
            if min(cx1 - cx0, cy1 - cy0) < 2 or (cx1 - cx0) * (cy1 - cy0) < FOLLOW_MASS * (x1 - x0) * (y1 - y0):
                if f.frame == k - 1 and (ways := self.ways_out(i, f, (H, W))):
                    self.exits[i] = f, ways  # followed up to the edge, and its motion carries it out
                continue  # its guess is (mostly) out of the frame
            w, h = cx1 - cx0, cy1 - cy0  # its window, and the region around it that mean shift searches
            dx, dy = int(FOLLOW_SEARCH * w), int(FOLLOW_SEARCH * h)
            region = rx0, ry0, _, _ = max(cx0 - dx, 0), max(cy0 - dy, 0), min(cx1 + dx, W), min(cy1 + dy, H)
            back = self.back_projection(i, hsv, region)
            _, (x, y, w, h) = cv2.meanShift(back, (cx0 - rx0, cy0 - ry0, w, h), MEAN_SHIFT)
            if back[y : y + h, x : x + w].mean() < FOLLOW_MASS * f.mass:
                continue
            x, y = x + rx0 - max(cx0 - x0, 0), y + ry0 - max(cy0 - y0, 0)  # in the frame, the box the edge cut
            box = (x, y, x + x1 - x0, y + y1 - y0)
            moved = np.hypot(*velocity(guess, box, 1)) / max(x1 - x0, y1 - y0, 1)
            finds[i] = box, moved
        for i, j in [(i, j) for i in finds for j in finds if i < j]:
            if i in finds and j in finds and box_iou(finds[i][0], finds[j][0]) > FOLLOW_OVERLAP:
                del finds[i if finds[i][1] > finds[j][1] else j]  # pulled onto the other's place
        for i, (box, _) in finds.items():
            self.followed[i] = self.followed[i].found(k, box)

    def hsv(self, frame: np.ndarray) -> np.ndarray | None:
        """``frame`` in HSV when looks are on (one conversion per frame for all that asks for colours)."""
        return cv2.cvtColor(frame, cv2.COLOR_RGB2HSV) if self.by_looks else None

    def drifting(self, frame: np.ndarray, masks: dict[int, np.ndarray], hsv: np.ndarray | None = None) -> list[int]:
        """The instances among ``masks`` (in view) whose mask has left its object (:meth:`drifted`);
        they stay adrift until a detection anchors them again (``hsv``: the frame in HSV, if at hand)."""
        if hsv is None and masks:
            hsv = self.hsv(frame)
        out = [i for i, m in masks.items() if self.drifted(frame, m, i, hsv)]
        self.adrift.update(out)
        return out

    def cut(self) -> None:
        """A scene cut: where the instances were and how they moved say nothing any more."""
        self.points.clear()
        self.last_seen.clear()
        self.motion.clear()
        self.trail.clear()
        self.adrift.clear()
        self.followed.clear()
        self.exits.clear()

    def returns(self, i: int, shape: tuple[int, int]) -> list:
        """Where instance ``i`` may come back into view if it was seen leaving: its last place (its last
        find by colours, else its last visible mask) touched an edge of a frame of ``shape`` while it
        moved towards that edge (its velocity: followed, else between anchors, else flowed). It comes
        back through that edge (moving back) or through the opposite one (moving on), each at the
        same place along the edge. A partial first view at an edge, with no motion known, has not
        been seen leaving: it may be coming in."""
        f, motion = self.followed.get(i), self.motion.get(i)
        box = f.box if f is not None else box_xyxy(self.last_seen[i]) if i in self.last_seen else None
        v = f.velocity if f is not None and any(f.velocity) else None
        if v is None and motion is not None:
            v = motion.velocity if motion.velocity is not None else motion.flowed
        if box is None or v is None:
            return []
        H, W = shape
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        at_x = [(0, y0, w, y1), (W - w, y0, W, y1)]  # the left and right edges, at its height
        at_y = [(x0, 0, x1, h), (x0, H - h, x1, H)]  # the top and bottom edges
        out = []
        if (x0 <= EDGE and v[0] < 0) or (x1 >= W - EDGE and v[0] > 0):
            out += at_x
        if (y0 <= EDGE and v[1] < 0) or (y1 >= H - EDGE and v[1] > 0):
            out += at_y
        return out

    def ways_out(self, i: int, f: Followed, shape: tuple[int, int]) -> list[tuple[int, float]]:
        """The edges instance ``i`` left a frame of ``shape`` by, if its follow ``f`` saw it leave: its
        guess on the next frame is (mostly) out of the frame, past each edge returned, as (edge: 0
        left, 1 right, 2 top, 3 bottom; the centre's place along it). Leaving needs a follow that can
        be trusted there:

        - it found the instance since its anchor (its velocity was measured in view: the one between
          anchors may span a time out of view, and a sliver back at the edge is coming in), or the
          instance was followed out of the frame before this anchor, which found it still cut by an
          edge (:attr:`Motion.leaving`: the velocity between its anchors is its way out);
        - the anchor saw it whole, or its view cut by the edge is no thinner than Lucas-Kanade's
          window (a follow on a sliver finds its few pixels anywhere near; on a thin object seen
          whole, it searches the object's whole box);
        - its find lies where the anchor's motion (between anchors, or flowed) puts the instance,
          within reach (:func:`within`: a find pulled onto another object is elsewhere); with no
          such motion (one anchor, and no corners: lost or thin), the follow found it on at least
          :data:`FOLLOW_STEADY` frames in a row (a follow ends at its first miss);
        - through each edge goes at least :data:`OUTWARD` of its followed speed.
        """
        motion = self.motion.get(i)
        if motion is None or (f.frame <= motion.frame and not motion.leaving):
            return []
        x0, y0, x1, y1 = motion.box
        if min(x1 - x0, y1 - y0) < LK["winSize"][0] and not motion.whole:
            return []
        waited, found = f.frame - motion.frame, ((f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2)
        speeds = [v for v in (motion.velocity, motion.flowed) if v is not None]  # in the order of its guesses
        trusted = any(
            within(found, ((g[0] + g[2]) / 2, (g[1] + g[3]) / 2), max(x1 - x0, y1 - y0), v, waited)
            for v, g in zip(speeds, motion.guesses(f.frame))
        )
        if not (trusted if speeds else waited >= FOLLOW_STEADY):
            return []
        H, W = shape
        gx0, gy0, gx1, gy1 = f.guess(f.frame + 1)

        def outward(axis: int, sign: int) -> bool:
            return sign * f.velocity[axis] > OUTWARD * float(np.hypot(*f.velocity))

        cx, cy = found
        out = [(0, cy)] if gx0 < 0 and outward(0, -1) else [(1, cy)] if gx1 > W and outward(0, 1) else []
        out += [(2, cx)] if gy0 < 0 and outward(1, -1) else [(3, cx)] if gy1 > H and outward(1, 1) else []
        return out

    def back_within(self, i: int, k: int, box, shape: tuple[int, int]) -> bool:
        """Whether a detection's ``box`` on frame ``k`` may be instance ``i``: yes, unless it was
        followed out of the frame (:meth:`ways_out`). Then it turned at the edge, as off a wall, and
        is where a velocity of its own takes it, reflected at the frame's edges (:func:`within`); or it
        is still leaving, or came back where it left, no farther from there than its fastest speed
        seen takes it (plus half a size: a box's centre is not the object's edge); or it went on
        through the other side, at the same place on the opposite edge. One object is not at two
        edges at once: that, only once its last part had left, and no deeper since than its speed
        takes it (:func:`came_in`). A look-alike entering elsewhere, round a corner, farther along
        the edge or deeper into the frame, is another object."""
        (f, ways), motion = self.exits.get(i, (None, [])), self.motion.get(i)
        if f is None or motion is None:
            return True
        H, W = shape
        waited = max(k - f.frame, 1)
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        hw, hh = (f.box[2] - f.box[0]) / 2, (f.box[3] - f.box[1]) / 2
        speeds = [v for v in (f.velocity, motion.velocity, motion.flowed) if v is not None]
        size = max(motion.box[2] - motion.box[0], motion.box[3] - motion.box[1], box[2] - box[0], box[3] - box[1])
        point = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for v in speeds:  # turned at the edge
            turned = fold(cx + v[0] * waited, hw, W - hw), fold(cy + v[1] * waited, hh, H - hh)
            if within(point, turned, size, v, waited):
                return True
        speed = max(motion.fastest, *(np.hypot(*v) for v in speeds))
        for e0, along in ways:
            if np.hypot(*np.subtract(point, on_edge(e0, along, shape))) <= size / 2 + speed * waited:
                return True  # still leaving, or back where it left
            trailing = max(inward(f.box, e0, shape), 0.0)  # how far its last part was from the edge
            if came_in(box, e0 ^ 1, along, shape, size / 2, speed * waited - trailing):
                return True  # went on through the opposite edge, after it had left
        return False

    def reach(self, i: int, k: int, box, places, per_frame: float = REACH_PER_FRAME) -> bool:
        """Whether a detection's ``box`` is within reach of one of instance ``i``'s ``places``, in
        sizes of the instance as its last anchor saw it (a drifting mask shrinks; the object does not)."""
        motion = self.motion.get(i)
        waited = k - motion.frame if motion else 0
        size = max(motion.box[2] - motion.box[0], motion.box[3] - motion.box[1]) if motion else None
        return any(near(box, p, waited, per_frame, size) for p in places)

    def alike(self, look: np.ndarray, i: int, whole_only: bool = False) -> float | None:
        """How much ``look`` is like instance ``i`` at its anchors (the best of its gallery; with
        ``whole_only`` its whole views only); None when it has no such view."""
        if look is None:
            return None
        views = [h for h, w in self.looks.get(i, ()) if w or not whole_only]
        return max((similarity(look, h) for h in views), default=None)

    def vetoes(self, look, i: int, detection: np.ndarray, box) -> bool:
        """Whether a detection and instance ``i``'s whole views look too unlike to be one object: the
        detection seen whole, or showing at least :data:`VIEW_SHARE` of the instance's size at its
        last anchor (a sliver at the edge may show colours of one part only; ``box``: the detection's)."""
        alike = self.alike(look, i, whole_only=True)
        return alike is not None and alike < VETO and not self.sliver(detection, box, i)

    def two_shapes(self, box, i: int, shape: tuple[int, int]) -> bool:
        """Whether a detection's ``box`` and instance ``i``, seen whole at its last anchor, are two
        objects by their boxes: unlike (:data:`PLACE_SHAPE`; a side of the detection cut by an edge of
        a frame of ``shape`` is a least size), and the detection longer along one side than any clear
        view of that side of the instance (:meth:`widen`) by more than :data:`GROWN`, as SORT's gate
        holds a track's aspect ratio and scale. Being hidden in part, or cut by an edge, only
        shortens a side: a view cut by the edge that is longer is no part of the instance either."""
        motion, extent = self.motion.get(i), self.extent.get(i)
        if motion is None or extent is None or not motion.whole:
            return False
        longer = any(0 < side < (box[axis + 2] - box[axis]) / GROWN for axis, side in enumerate(extent))  # 0: unseen
        return longer and shape_agreement(box, motion.box, shape) < PLACE_SHAPE

    def under(self, i: int, detection: np.ndarray, box, result: FrameResult, k: int) -> bool:
        """Whether a sliver (``detection``, its ``box``) lies where instance ``i`` is on frame ``k``: on
        its mask in ``result``; or, its mask dropped as adrift, on its last find by colours (of the
        last :data:`FOLLOW_FRESH` frames) moved on at its velocity, as one leaving by an edge is."""
        if i in result.masks:
            return bool(np.logical_and(detection, result.masks[i]).any())
        f = self.followed.get(i)
        return f is not None and f.fresh(k) and box_iou(f.guess(k), box) > 0

    def sliver(self, detection: np.ndarray, box, i: int) -> bool:
        """Whether a detection (its mask and ``box``) is a sliver of instance ``i`` at the frame's edge:
        cut by the edge, and smaller than :data:`VIEW_SHARE` of the instance's box at its last anchor
        (its colours may be one part's only: they neither veto nor match)."""
        if whole(detection):
            return False
        motion = self.motion.get(i)
        return motion is None or box_area(box) < VIEW_SHARE * box_area(motion.box)

    def drifted(self, frame: np.ndarray, mask: np.ndarray, i: int, hsv: np.ndarray | None = None) -> bool:
        """Whether instance ``i``'s mask in view has left its object: less than :data:`DRIFT_SHARE` of
        its pixels have colours of any view of it (partial ones too: a mask looks like what it was
        anchored on, whole or not)."""
        if not self.by_looks or not self.looks.get(i):
            return False
        look = appearance(frame, mask, hsv)
        return max(coverage(look, view) for view, _ in self.looks[i]) < DRIFT_SHARE

    def match(self, result: FrameResult, frame: np.ndarray, detections: list[np.ndarray], ids: list[int],
              carried: dict, k: int, cut: bool = False, hsv: np.ndarray | None = None) -> set[int]:  # fmt: skip
        """Match frame ``k``'s detections with every instance so far; re-anchor, revive, or start new
        ids (updates ``result``, ``ids`` and ``carried`` in place); return the ids a detection
        matched. ``cut``: the frame starts a new shot, so looks alone decide (every instance is out
        of view); ``hsv``: the frame in HSV, if at hand. See the module docstring."""
        cfg = self.cfg
        detections = [d for d in detections if d.any()]
        known = {i: result.masks.get(i, carried.get(i, self.last_seen.get(i))) for i in ids}
        tracks = sorted(i for i in ids if known[i] is not None or i in self.looks)
        guesses = {i: self.motion[i].guesses(k) for i in tracks if i in self.motion}
        for i, f in self.followed.items():
            if i in guesses and f.fresh(k):
                guesses[i] = [f.guess(k)]  # found by its colours of late: a newer place than its anchor's
        for i in guesses:
            if (box := self.tracked(i)) is not None:
                guesses[i] = [box]  # its corners moved this far since its anchor
        # where each instance may be: its mask's box and its motion's guesses (nothing across a cut)
        hsv = self.hsv(frame) if hsv is None else hsv
        looks = [appearance(frame, d, hsv) if self.by_looks else None for d in detections]
        # a mask that left its object (:meth:`drifted`, now or since the last anchor) is not a place,
        # and its instance, wherever it went, may be found by looks as if out of view
        lost = {i for i in tracks if i in self.adrift or (i in result.masks and self.drifted(frame, known[i], i, hsv))}

        def place(i: int) -> list:  # its mask's box (unless the mask drifted) and its motion's guesses
            return ([] if i in lost else [box_xyxy(known[i])]) + list(guesses.get(i, ()))

        places = {} if cut else {i: place(i) for i in tracks if known[i] is not None}
        for i in places:
            if i not in result.masks or i in lost:  # it may have left the frame: it may come back by an edge
                places[i] += self.returns(i, frame.shape[:2])
        boxes = [box_xyxy(d) for d in detections]
        score = np.zeros((len(detections), len(tracks)))
        for r, d in enumerate(detections):
            for c, i in enumerate(tracks):
                if self.vetoes(looks[r], i, d, boxes[r]):
                    continue  # seen (nearly) whole, they look like two objects: no place makes them one
                where, anchor = 0.0, self.motion[i].box if i in self.motion else boxes[r]
                if i in places:
                    # a detection unlike its box at a whole anchor is not the object its mask was
                    unlike = (
                        i in self.motion and self.motion[i].whole and shape_agreement(boxes[r], anchor) < PLACE_SHAPE
                    )
                    on_mask = 0.0 if i in lost or unlike else match_score(d, known[i])
                    where = max([on_mask, *(box_iou(boxes[r], g) for g in guesses.get(i, ()))])
                alike = self.alike(looks[r], i) or 0.0
                if (i not in result.masks or i in lost) and self.two_shapes(boxes[r], i, frame.shape[:2]):
                    alike = 0.0  # out of view or adrift, looks alone would make them one
                if i in result.masks and i not in lost:
                    close = self.reach(i, k, boxes[r], places.get(i, ()))
                else:  # out of view or adrift: anywhere, unless followed out (then back by where it left)
                    close = cut or self.back_within(i, k, boxes[r], frame.shape[:2])
                alike = alike if alike >= cfg["min_similarity"] else 0.0  # looks below it say nothing
                if where >= cfg["match_iou"] or (alike and close):
                    score[r, c] = (
                        (where if where >= cfg["match_iou"] else 0.0)
                        + alike
                        + TIE * agreement(boxes[r], anchor, places.get(i, ()), frame.shape[:2])
                    )
        if self.by_looks:
            self.same_surface(frame, detections, tracks, score)
        pairs = {r: (tracks[c], score[r, c], "") for r, c in assign(score) if score[r, c] > 0}
        if not cut:
            pairs |= self.second(result, detections, looks, boxes, tracks, places, pairs, k, frame.shape[:2])
        in_view = set(result.masks)
        for r, mask in enumerate(detections):
            if r in pairs:
                i, s, how = pairs[r]
                reason = "re-detected" if i in in_view else "revived"
                if reason == "revived":
                    why = f"scene cut: by looks alone, score {s:.2f}" if cut else f"score {s:.2f}{how}"
                    result.events.append({"id": i, "event": "revived", "reason": why})
            else:
                i = max(ids, default=0) + 1
                ids.append(i)
                reason = "born"
                why = "re-detection after a scene cut" if cut else "re-detection"
                result.events.append({"id": i, "event": "born", "reason": why})
            carried[i] = mask
            result.masks[i] = mask
            result.info[i] = instance_info("refined", reason, mask)
        matched = {i for i, _, _ in pairs.values()}
        for i in in_view - matched:
            del result.masks[i]  # in view, but no detection agrees: hidden (its mask carried on) until one does
            result.info[i] = instance_info("lost", "not re-detected", None)
        return matched

    def same_surface(
        self, frame: np.ndarray, detections: list[np.ndarray], tracks: list[int], score: np.ndarray
    ) -> None:
        """Where a detection may be more than one instance, or an instance more than one detection
        (look-alikes), a pair whose surfaces match (:func:`texture_match` at least :data:`TEXTURE`,
        against any of the instance's views at its last anchors) gains one in ``score`` (in place):
        colours say what an object is made of, the texture which one it is."""
        contested = (score > 0) & (((score > 0).sum(1, keepdims=True) > 1) | ((score > 0).sum(0, keepdims=True) > 1))
        views = {}
        for r, c in zip(*np.nonzero(contested)):
            if r not in views:
                views[r] = texture(frame, detections[r])
            if any(
                (t := texture_match(v, views[r])) is not None and t >= TEXTURE for v in self.textures.get(tracks[c], ())
            ):
                score[r, c] += 1.0

    def second(self, result, detections, looks, boxes, tracks, places, pairs, k, shape) -> dict:
        """The second association (ByteTrack's, for what the first left; OC-SORT recovers the same way
        from the last observation): an instance in view and a detection, both unmatched, that are
        each other's only candidate are one object. A candidate is within a wider reach, unless a
        whole view of the instance says it looks otherwise; or anywhere, when a whole view of the
        instance says it looks alike (a mask that lost its object, stuck where the flow left it)."""
        taken = {i for i, _, _ in pairs.values()}
        rows = [r for r in range(len(boxes)) if r not in pairs]
        cols = [i for i in tracks if (i in result.masks or i in self.adrift) and i not in taken and i in places]
        candidates = {}
        for r in rows:
            for i in cols:
                if self.sliver(detections[r], boxes[r], i):  # its colours say nothing: it must lie on it
                    if self.under(i, detections[r], boxes[r], result, k):
                        candidates[r, i] = 0.0
                    continue
                if i not in result.masks and not self.back_within(i, k, boxes[r], shape):
                    continue  # followed out of the frame: not back by where it left
                if (i not in result.masks or i in self.adrift) and self.two_shapes(boxes[r], i, shape):
                    continue
                alike = self.alike(looks[r], i, whole_only=True)
                if alike is not None and alike >= self.cfg["min_similarity"]:
                    candidates[r, i] = alike
                elif alike is None and self.reach(i, k, boxes[r], places[i], SECOND_REACH_PER_FRAME):
                    candidates[r, i] = 0.0
        out = {}
        for (r, i), alike in candidates.items():
            if sum(1 for rr, _ in candidates if rr == r) == 1 and sum(1 for _, ii in candidates if ii == i) == 1:
                out[r] = (i, alike, ", the only candidate left")
        return out


def map_ids(theirs: dict[int, np.ndarray], ours: dict[int, np.ndarray], min_iou: float) -> dict[int, int]:
    """Another tracker's ids onto ours: each of ``theirs`` (id -> mask) takes the id of the one of
    ``ours`` it overlaps most, one to one (the Hungarian assignment on mask IoU), at ``min_iou`` or more."""
    a, b = sorted(theirs), sorted(ours)
    iou = np.array([[mask_iou(theirs[t], ours[i]) for i in b] for t in a]).reshape(len(a), len(b))
    return {a[r]: b[c] for r, c in assign(iou) if iou[r, c] >= min_iou}
