# Text-guided segmentation: models -> frames -> first frame -> propagation -> overlay; still images.
# (Rules arrive with the segmentation chain.)

SEGMENT_TARGETS = []
