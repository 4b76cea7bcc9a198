"""Reference for kprtrack.eval.kit_boxes.region_ious: shapely (the kit's own geometry library, in the kit's
venv) evaluating the IoU formula both PoseTrack21 kit scripts apply to a box and an ignore region
(valid polygon: intersection/union; invalid: buffer(0), summed over its parts when it falls apart).

Usage: region_iou.py CASES.json -> one JSON line: {"ious": [[...per box...] per case], "parts": [...],
"valid": [...]}; CASES.json = [{"polygon": [[x, y], ...], "boxes": [[x1, y1, x2, y2], ...]}, ...]
"""
import json
import sys

from shapely.geometry import MultiPolygon, Polygon

out = {"ious": [], "parts": [], "valid": []}
for case in json.load(open(sys.argv[1])):
    region = Polygon(case["polygon"])
    parts = [region] if region.is_valid else None
    if parts is None:
        fixed = region.buffer(0)
        parts = [fixed] if isinstance(fixed, Polygon) else list(fixed.geoms if isinstance(fixed, MultiPolygon)
                                                                else fixed)
    ious = []
    for x1, y1, x2, y2 in case["boxes"]:
        box = Polygon([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])
        inter = sum(p.intersection(box).area for p in parts)
        union = sum(p.union(box).area for p in parts)
        ious.append(inter / union if union > 0 else None)
    out["ious"].append(ious)
    out["parts"].append(len([p for p in parts if not p.is_empty]))
    out["valid"].append(region.is_valid)
print(json.dumps(out))
