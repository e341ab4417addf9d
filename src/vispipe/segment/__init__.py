"""Text-guided segmentation: a detector finds the target's instances on the first frame, SAM2 redraws
each, a tracker carries them through the video, re-detection keeps their ids.

Layered so that imports flow one way (``tests/test_imports.py`` fails on a cycle):

- the workflow layer, standard library only (the Snakefile imports it on every dry run):
  :mod:`.layout` (file names, the config blocks each step reads, checks), :mod:`.registry` (the
  models, detectors, trackers and export formats by name), :mod:`.samples` (sheets and folder
  patterns), :mod:`.shards`, :mod:`.settings`, :mod:`.args`;
- the vocabulary: :mod:`.types` (``Instances``, ``Refined``, ``FrameResult``, the Protocols) and
  :mod:`.geometry` (IoU, NMS, the one Hungarian assignment), NumPy only;
- files: :mod:`.files.frames` (kept frames, the H.264 writer), :mod:`.files.masks` (id PNGs, RLE,
  atomic folders), :mod:`.files.prompts`, :mod:`.files.tracks` (propagate's outputs),
  :mod:`.files.formats` (one module per export format, COCO video included);
- models: :mod:`.models` (fetch, load, preload; a family module per model that is no detector);
- :mod:`.detect` (one module per detector, and the runner), :mod:`.refine` (SAM2 from boxes and
  points), :mod:`.associate` (re-identification: gallery, motion, matching);
- :mod:`.track` (the generic loop, one module per tracker);
- :mod:`.evaluation` (J&F, identity, DAVIS tables, synthetic clips) and :mod:`.overlay` (pictures);
- :mod:`.steps`: one module per pipeline step, what the scripts call. A script imports only its
  step's module, and the modules a config picks by name are added to its code hash
  (:func:`.registry.step_modules`), so an edit reruns exactly the steps that run it.
"""
