"""A new user's first video (issue 20): ``run source=...`` on an empty cache downloads every file of the
stack once from the hosts, verifies it, tracks; a second run downloads nothing.

The hosts are a loopback HTTP server (``KPRTRACK_WEIGHTS_MIRROR``) serving copies of the real models in
../shared under the registry's file names; nothing touches the network. The Hugging Face host of
``kpr_multi`` is imitated too: a redirect carrying ``X-Linked-Etag`` (the file's sha256) and
``X-Linked-Size``, as huggingface.co answers, in front of a small torchreid-layout KPR checkpoint.
"""
from __future__ import annotations

import dataclasses
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from kprtrack.cli import main
from kprtrack.detector.yolox_weights import YOLOX_ONNX_WEIGHTS
from kprtrack.errors import InputError
from kprtrack.pose.movenet import MOVENET_WEIGHTS
from kprtrack.reid.kpr.registry import KPR_WEIGHTS
from kprtrack.reid.onnx_weights import ONNX_REID_WEIGHTS
from kprtrack.weights import MIRROR_ENV, cache_dir, pending_downloads, resolve_weights, sha256_of
from tests.conftest import REPO, shared_file

# preset=fast: registry entry -> the shared file served under the entry's file name
FAST_FILES = [
    (YOLOX_ONNX_WEIGHTS, "yolox_nano", "models/yolox_nano_416.onnx"),
    (MOVENET_WEIGHTS, "movenet_lightning_int8", "models/movenet_singlepose_lightning_int8.tflite"),
    (ONNX_REID_WEIGHTS, "osnet_x0_25_msmt17", "models/osnet_x0_25_msmt17.onnx"),
]
KPR_FIXTURE = REPO / "tests" / "fixtures" / "numpy1" / "torchreid_kpr.pth.tar"


class Host:
    """A loopback server over a folder; ``linked`` maps a file name to the sha256 announced for it
    on a Hugging-Face-style redirect (``/<name>`` -> ``/cdn/<name>``)."""

    def __init__(self, root: Path):
        self.root, self.requests, self.linked = root, [], {}
        host = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _redirect(self) -> bool:
                name = self.path.lstrip("/")
                host.requests.append((self.command, name))
                if name not in host.linked:
                    return False
                self.send_response(302)
                self.send_header("Location", f"/cdn/{name}")
                self.send_header("X-Linked-Etag", f'"{host.linked[name]}"')
                self.send_header("X-Linked-Size", str((host.root / "cdn" / name).stat().st_size))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def do_GET(self):
                if not self._redirect():
                    super().do_GET()

            def do_HEAD(self):
                if not self._redirect():
                    super().do_HEAD()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self) -> list[str]:
        return [name for method, name in self.requests if method == "GET" and not name.startswith("cdn/")]


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = tmp_path / "host"
    (root / "cdn").mkdir(parents=True)
    server = Host(root)
    monkeypatch.setenv(MIRROR_ENV, server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def fast_host(host, monkeypatch):
    """The three preset=fast files on the host; each registry entry carries the served file's sha256
    (standing in for the published checksum where upstream publishes none; OSNet's is the real one)."""
    for registry, name, relative in FAST_FILES:
        source = shared_file(relative)
        spec = registry[name]
        shutil.copyfile(source, host.root / spec.file_name)
        digest = sha256_of(source)
        if spec.sha256:
            assert spec.sha256 == digest  # the registry's checksum is the published file's
        monkeypatch.setitem(registry, name, dataclasses.replace(spec, sha256=digest))
    return host


@pytest.fixture
def clip(tmp_path):
    """24 frames of the shared people video where a person walks in (frames 67-90)."""
    import cv2

    capture = cv2.VideoCapture(str(shared_file("data/media/one-by-one-person-detection.mp4")))
    path = tmp_path / "clip.mp4"
    for _ in range(66):
        assert capture.grab()
    writer = None
    for _ in range(24):
        ok, frame = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, frame.shape[1::-1])
        writer.write(frame)
    writer.release()
    capture.release()
    return path


@pytest.mark.slow
def test_first_run_downloads_each_file_once_verifies_and_tracks(fast_host, clip, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    args = ["run", f"source={clip}", "preset=fast", "run.progress=false"]
    assert main(args + [f"output.dir={tmp_path / 'run1'}"]) == 0
    out, err = capsys.readouterr()
    files = sorted(registry[name].file_name for registry, name, _ in FAST_FILES)
    assert sorted(fast_host.gets()) == files  # every file once
    # the plan, before any work: how many files, how much (registry size or HEAD), from where, into which folder
    assert f"first use of 3 model file(s): downloading" in err and str(cache_dir()) in err
    assert "size unknown" not in err and all(f"{fast_host.url}/{name}" in err for name in files)
    for name in files:  # verified copies in the cache
        assert sha256_of(cache_dir() / name) == sha256_of(fast_host.root / name)
    assert not list(cache_dir().glob("*.part"))
    # it tracked: the files exist and the summary names them
    run1 = tmp_path / "run1"
    assert (run1 / "mot" / "clip.txt").read_text().strip() and (run1 / "render" / "clip.mp4").stat().st_size
    assert f"rendered video: {run1 / 'render' / 'clip.mp4'}" in out
    assert str(run1 / "mot" / "clip.txt") in out and "identities" in out and "frames/s: detector" in out

    fast_host.requests.clear()
    assert main(args + [f"output.dir={tmp_path / 'run2'}", "run.cache=false"]) == 0
    out, err = capsys.readouterr()
    assert fast_host.requests == [] and "first use" not in err  # nothing downloaded, nothing asked
    assert (tmp_path / "run2" / "mot" / "clip.txt").read_text() == (run1 / "mot" / "clip.txt").read_text()


@pytest.mark.slow
def test_a_file_failing_its_checksum_is_refused_and_not_cached(fast_host, clip, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    name = ONNX_REID_WEIGHTS["osnet_x0_25_msmt17"].file_name
    served = fast_host.root / name
    served.write_bytes(served.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    assert main(["run", f"source={clip}", "preset=fast", "run.progress=false", f"output.dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err
    assert "failed the check" in err and "checksum mismatch" in err and name in err
    assert not (cache_dir() / name).exists() and not list(cache_dir().glob("*.part"))


def test_kpr_multi_downloads_through_a_hugging_face_redirect_and_checks_its_sha256(host):
    """The default ReID of dataset=video: huggingface.co redirects to its CDN and states the sha256
    (X-Linked-Etag) and size (X-Linked-Size); kprtrack checks the file against them."""
    name = KPR_WEIGHTS["kpr_multi"].file_name
    shutil.copyfile(KPR_FIXTURE, host.root / "cdn" / name)
    host.linked[name] = "0" * 64
    with pytest.raises(InputError, match="checksum mismatch"):
        resolve_weights("kpr_multi", KPR_WEIGHTS, progress=False)
    assert not (cache_dir() / name).exists()
    host.linked[name] = sha256_of(KPR_FIXTURE)
    path = resolve_weights("kpr_multi", KPR_WEIGHTS, progress=False)
    assert sha256_of(path) == sha256_of(KPR_FIXTURE) and path.parent == cache_dir()
    from kprtrack.reid.kpr.checkpoint import read_checkpoint

    state, config = read_checkpoint(path)  # a torchreid-layout KPR file, as the real one
    assert state and config["model"]["kpr"]
    host.requests.clear()
    assert resolve_weights("kpr_multi", KPR_WEIGHTS) == path and host.requests == []


@pytest.mark.slow
def test_every_default_file_of_the_video_stack_downloads_by_itself(host):
    """dataset=video's (and images') stages: every file has a direct URL (no Google Drive), and the
    first run's plan sizes them from the host (HEAD; Hugging Face's X-Linked-Size)."""
    from kprtrack.config import compose

    payloads = {"yolox_s.onnx": b"y" * 1000, "hrnet_w32_posetrack18_256x192-1ee951c4_20201028.pth": b"h" * 2000}
    for file_name, payload in payloads.items():
        (host.root / file_name).write_bytes(payload)
    kpr = KPR_WEIGHTS["kpr_multi"].file_name
    shutil.copyfile(KPR_FIXTURE, host.root / "cdn" / kpr)
    host.linked[kpr] = sha256_of(KPR_FIXTURE)
    for dataset in ("video", "images"):
        cfg = compose("run", [f"dataset={dataset}", "dataset.path=x"], require_values=False)
        assert (cfg.detector.weights, cfg.pose.weights, cfg.reid.weights) == (
            "yolox_s", "hrnet_w32_posetrack18_256x192", "kpr_multi")
        pending = pending_downloads(cfg)
        sizes = {p.spec.file_name: p.size for p in pending}
        assert sizes == {**{k: len(v) for k, v in payloads.items()}, kpr: KPR_FIXTURE.stat().st_size}
        assert not any(p.spec.meta.get("manual_download") for p in pending)
    # dataset=posetrack21 keeps the paper's ReID (a manual Google Drive file: not in the plan)
    cfg = compose("run", ["dataset=posetrack21"], require_values=False)
    assert cfg.reid.weights == "kpr_occ_pt_IN"
    assert [p.stage for p in pending_downloads(cfg)] == ["detector", "pose"]


def test_registry_urls_of_the_fast_stack_are_the_official_ones():
    assert YOLOX_ONNX_WEIGHTS["yolox_nano"].url == \
        "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx"
    assert MOVENET_WEIGHTS["movenet_lightning_int8"].url.startswith("https://tfhub.dev/google/lite-model/movenet/")
    osnet = ONNX_REID_WEIGHTS["osnet_x0_25_msmt17"]
    assert osnet.url.startswith("https://github.com/Smorodov/Multitarget-tracker/raw/")
    assert osnet.size == 891612 and len(osnet.sha256) == 64
    assert KPR_WEIGHTS["kpr_multi"].url.startswith(
        "https://huggingface.co/trackinglaboratory/keypoint_promptable_reid/resolve/main/")
