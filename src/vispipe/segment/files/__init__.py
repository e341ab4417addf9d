"""What the steps read and write: :mod:`.frames` (kept frames, meta, the H.264 writer), :mod:`.masks`
(id PNGs, the one PNG id reader, COCO RLE, atomic folders), :mod:`.prompts` (prompt files),
:mod:`.tracks` and :mod:`.coco` (propagate's outputs) and :mod:`.formats` (the export formats)."""
