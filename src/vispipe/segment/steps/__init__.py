"""One module per pipeline step; the scripts in ``scripts/`` parse arguments and call these.

- :mod:`.frames`    extract_frames: a video's kept frames and meta.json
- :mod:`.first`     segment_first and segment_image: the target on the first frame or a still
- :mod:`.propagate` propagate: the instances through every kept frame, by the configured tracker
- :mod:`.overlay`   render_overlay: the H.264 overlay video
- :mod:`.export`    export_annotations: the tracks for annotation and training tools
- :mod:`.evaluate`  evaluate_segmentation and davis_table: scores against ground truth
- :mod:`.models`    fetch_models, and the loading, refiner and detector every model step shares
- :mod:`.common`    what every step reads the same way (other rules' files, a target's text)

Each script imports only its step's module (this file imports none), so a step's code hash
(vispipe.codedeps) covers the code it runs and no other: an edit to an export format reruns the
exports, not propagation. Each takes the step's settings parsed once at the script's entry
(:class:`..settings.Settings`), never the raw config, and writes every output to a temporary name
renamed when complete, so a failed or killed step leaves nothing half-written behind.
"""
