"""Detectors: text -> :class:`~vispipe.segment.types.Instances`, one module per family.

``segment.detector`` names one (:data:`vispipe.segment.registry.DETECTORS`); each module is its
model's family too (``classes``, ``tiny``) and converts its model's output into ``Instances``:

- :mod:`.clipseg`: CLIPSeg's heatmap -> Otsu -> connected components (the seed's);
- :mod:`.grounding_dino`, :mod:`.owlv2`: open-vocabulary boxes (:mod:`.boxes`: what they share);
- :mod:`.sam3`: SAM 3's own masks.

:mod:`.runner` runs the configured one and SAM2 on a picture: the first frame, a still image, and
re-detection during propagation. No tracker is imported here, and detectors import no step.
"""
