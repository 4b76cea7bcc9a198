"""kprtrack.weights: registry names, paths, file:// and http:// downloads, cache, checksums."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading
from fractions import Fraction
from functools import partial

import pytest

from kprtrack.errors import InputError
from kprtrack.weights import WeightSpec, cache_dir, resolve_weights, sha256_of, torch_load

PAYLOAD = b"fake weights " * 1000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over a folder holding model.bin; yields (base URL, request log)."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "model.bin").write_bytes(PAYLOAD)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_cache_dir_follows_kprtrack_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KPRTRACK_HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / "weights"


def test_local_path_is_returned_as_is(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(PAYLOAD)
    assert resolve_weights(str(path)) == path
    assert sha256_of(path) == PAYLOAD_SHA
    with pytest.raises(InputError, match=r"missing.pth: weights file not found.*known: a, b"):
        resolve_weights(str(tmp_path / "missing.pth"), {"a": WeightSpec("file:///a"), "b": WeightSpec("file:///b")})


def test_registry_name_over_file_url_downloads_once(tmp_path):
    source = tmp_path / "src" / "model.bin"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    registry = {"m": WeightSpec(url=source.as_uri(), sha256=PAYLOAD_SHA.upper(), filename="m.bin")}
    first = resolve_weights("m", registry, progress=False)
    assert first == cache_dir() / "m.bin" and first.read_bytes() == PAYLOAD
    source.unlink()  # the second call must come from the cache
    assert resolve_weights("m", registry, progress=False) == first
    assert not list(cache_dir().glob("*.part"))


def test_http_download_cache_and_progress(served, capsys):
    base, requests = served
    url = f"{base}/model.bin"
    path = resolve_weights(url, progress=True)
    assert path.name == "model.bin" and path.read_bytes() == PAYLOAD
    assert "model.bin" in capsys.readouterr().err  # tqdm progress bar on stderr
    assert resolve_weights(url) == path
    assert len(requests) == 1  # cached: no second request
    registry = {"net": WeightSpec(url=url, sha256=PAYLOAD_SHA, filename="net.bin")}
    assert resolve_weights("net", registry, progress=False).read_bytes() == PAYLOAD


def test_checksum_mismatch_on_download_leaves_nothing(served):
    base, _ = served
    registry = {"net": WeightSpec(url=f"{base}/model.bin", sha256="0" * 64, filename="bad.bin")}
    with pytest.raises(InputError, match=r"bad.bin: downloaded file from http://127.0.0.1:\d+/model.bin "
                                         r"failed the check: .*checksum mismatch"):
        resolve_weights("net", registry, progress=False)
    assert not (cache_dir() / "bad.bin").exists()
    assert not list(cache_dir().glob("*.part"))


def test_checksum_mismatch_in_cache(tmp_path):
    cached = cache_dir() / "cached.bin"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"truncated")
    registry = {"c": WeightSpec(url="http://127.0.0.1:9/cached.bin", sha256=PAYLOAD_SHA)}
    with pytest.raises(InputError, match="cached.bin: checksum mismatch.*delete the file"):
        resolve_weights("c", registry)


def test_offline_and_missing_downloads_say_what_to_fetch(served):
    base, _ = served
    with pytest.raises(InputError, match=r"absent.bin: could not download http://127.0.0.1:\d+/absent.bin "
                                         r"\(HTTP Error 404.*put it at this path"):
        resolve_weights(f"{base}/absent.bin", progress=False)
    # nothing listens on port 9 (discard) on loopback: a refused connection, as when offline
    with pytest.raises(InputError, match=r"could not download http://127.0.0.1:9/x.bin"):
        resolve_weights("http://127.0.0.1:9/x.bin", progress=False)
    spec = {"manual": WeightSpec(url="https://example.invalid/big.pth")}
    with pytest.raises(InputError, match=r"big.pth: not in the cache; fetch https://example.invalid/big.pth"):
        resolve_weights("manual", spec, download=False)


def test_torch_load_errors_name_the_file(tmp_path):
    torch = pytest.importorskip("torch")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(os.urandom(64))
    with pytest.raises(InputError, match="bad.pth: cannot load checkpoint"):
        torch_load(bad)
    with pytest.raises(InputError, match="nope.pth: weights file not found"):
        torch_load(tmp_path / "nope.pth")

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": {}, "obj": Fraction(1, 3)}, unsafe)  # arbitrary objects are refused
    with pytest.raises(InputError, match="unsafe.pth: cannot load checkpoint: it holds a Python object of type "
                                         "fractions.Fraction"):
        torch_load(unsafe)
    good = tmp_path / "good.pth"
    np = pytest.importorskip("numpy")
    # numpy values pickled by this (numpy 2) process load too; numpy 1.x files: test_numpy1_checkpoints.py
    torch.save({"model": {"w": torch.ones(2)}, "best": np.float64(0.5), "a": np.arange(3)}, good)
    loaded = torch_load(good)
    assert loaded["model"]["w"].tolist() == [1.0, 1.0] and loaded["best"] == 0.5 and loaded["a"].tolist() == [0, 1, 2]


def test_published_sha256_prefix_is_checked(tmp_path):
    """Some upstreams (OpenMMLab) publish only the first hex digits of the sha256."""
    source = tmp_path / "src.bin"
    source.write_bytes(PAYLOAD)
    good = {"p": WeightSpec(url=source.as_uri(), sha256=PAYLOAD_SHA[:8], filename="p.bin")}
    assert resolve_weights("p", good, progress=False).read_bytes() == PAYLOAD
    bad = {"q": WeightSpec(url=source.as_uri(), sha256="0" * 8, filename="q.bin")}
    with pytest.raises(InputError, match="should start with 00000000"):
        resolve_weights("q", bad, progress=False)
    assert not (cache_dir() / "q.bin").exists()  # a bad download never lands in the cache
