"""Runs under the venv of the PoseTrack21 kit's MOT script (oracle.mot_kit_python: its py-motmetrics
fork needs pandas): evaluate_mot.py's own functions, unchanged (PTWrapper, load_results, get_mot_accum
with its ignore candidates, then the compute_many call of evaluate_mot_accums without the rounding of
its printed table) on every case of CASES_DIR, for use_ignore_regions True and False. Prints one JSON
line: {case: {"ignore": {seq or "OVERALL": {metric: value}}, "no_ignore": {...}}}.

Cases as in box_hota.py. The script opens every frame's image, so tiny JPEGs are written at each
image_info ``file_name`` under a scratch data set root."""
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.environ["KIT_ROOT"], "eval", "mot"))
import evaluate_mot  # noqa: E402  (sets motmetrics' solver to 'lap', as the script does)
import motmetrics as mm  # noqa: E402  (the kit's fork: eval/mot/motmetrics)
from datasets.pt_warper import PTWrapper  # noqa: E402
from PIL import Image  # noqa: E402

assert os.path.dirname(mm.__file__).startswith(os.path.join(os.environ["KIT_ROOT"], "eval", "mot")), mm.__file__


def images(gt_dir, root):
    for seq in os.listdir(gt_dir):
        for image in json.load(open(os.path.join(gt_dir, seq, "image_info.json"))):
            path = os.path.join(root, image["file_name"])
            if not os.path.isfile(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.new("RGB", (2, 2)).save(path)


def evaluate(gt_dir, pred_dir, data_root, use_ignore_regions):
    dataset = PTWrapper(gt_dir, data_root, vis_threshold=0.1)
    accums = [evaluate_mot.get_mot_accum(seq.load_results(pred_dir), seq, ignore_iou_thres=0.1,
                                         use_ignore_regions=use_ignore_regions) for seq in dataset]
    mh = mm.metrics.create()
    summary = mh.compute_many(accums, metrics=mm.metrics.motchallenge_metrics + ["num_matches", "num_objects"],
                              names=[str(s) for s in dataset if not s.no_gt], generate_overall=True)
    return {name: {k: (None if isinstance(v, float) and math.isnan(v) else float(v)) for k, v in row.items()}
            for name, row in summary.to_dict(orient="index").items()}


def main(cases_dir):
    results = {}
    for case in sorted(os.listdir(cases_dir)):
        root = os.path.join(cases_dir, case)
        data_root = tempfile.mkdtemp()
        images(os.path.join(root, "gt"), data_root)
        results[case] = {flag: evaluate(os.path.join(root, "gt"), os.path.join(root, "pred"), data_root, value)
                         for flag, value in (("ignore", True), ("no_ignore", False))}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
