"""Text-guided segmentation: CLIPSeg heatmap -> instances -> SAM2 refinement -> propagation (optical flow
or SAM2's tracker).

Modules, in pipeline order:

- :mod:`.models`    fetch the Hub models or build tiny random ones; load them offline
- :mod:`.video`     decode kept frames (PyAV), write the H.264 overlay video
- :mod:`.clipseg`   text prompt -> heatmap -> one instance per connected component
- :mod:`.sam2`      prompts (box + sampled points) -> refined masks
- :mod:`.flow`      Farneback optical flow and mask warping
- :mod:`.propagate` the frame-by-frame loop: flow + SAM2 refinement with fallbacks, re-detection
- :mod:`.sam2_video` SAM2's own memory tracker as the other propagator, memory bounded
- :mod:`.timing`    seconds per stage, and the prefetch thread
- :mod:`.overlay`   heatmap, mask and instance pictures
- :mod:`.masks`     instance-id PNGs, COCO RLE, atomic folders
- :mod:`.synthetic` clips with exact masks; :mod:`.vos_eval` J, F and J&F against them
- :mod:`.steps`     one function per pipeline step (what the scripts call)
- :mod:`.layout`    model and output paths, config checks for the Snakemake rules (no ML imports)
- :mod:`.args`      command-line options the scripts share
"""
