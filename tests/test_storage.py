"""Inputs and outputs in S3-compatible object storage, through Snakemake's storage plugin
(snakemake-storage-plugin-s3), against a real S3 server that the tests start on 127.0.0.1 (moto's
standalone server: the S3 REST protocol over HTTP, not a mocked client). Credentials reach the plugin
as environment variables, the endpoint as --storage-s3-endpoint-url, as docs/segmentation.md says.

One run reads a video and a still from the bucket, the video through a sample sheet that is in the
bucket too, and sends every result back to it (--default-storage-provider); another reads a frame
folder from the bucket into local results. A slice of the demo (1.2 s of its video, every 2nd frame)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DEMO_VIDEO, ROOT, assert_nothing_to_do, env_with_venv
from vispipe.config import ConfigError
from vispipe.segment.samples import with_samples

BUCKET = "vispipe-data"
# what a researcher's bucket holds: a clip, a sheet that lists it, a still, a folder of frames
CLIP, SHEET, STILL, FOLDER = "clips/bunny.mp4", "sheets/videos.tsv", "stills/frame.jpg", "frames/seq"
FOLDER_FRAMES = 3
SLICE = {"segment": {"device": "cpu", "frames": {"max_seconds": 1.2, "stride": 2}}}


# -- the config's paths as URLs, without a server: what the workflow layer checks and what it leaves to the plugin


def test_a_sheets_urls_are_left_to_the_storage_plugin(tmp_path, monkeypatch):
    """A sheet read through ``fetch`` may name files in storage: no local existence check refuses them,
    and they reach the rules as written (``s3://`` intact); a local path is still checked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sheet.tsv").write_text(
        "id\tpath\ttargets\tground_truth\tprompts\n"
        "a\ts3://b/clips/a.mp4\trabbit\ts3://b/gt/a\ts3://b/prompts/a.png\n"
        "f\ts3://b/frames/f\trabbit\t\t\n"
    )
    asked = []

    def fetch(url):
        asked.append(url)
        return tmp_path / "sheet.tsv"

    seg = {"targets": {"rabbit": {"prompt": "rabbit"}}, "videos": {}, "images": {},
           "samples": {"videos": "s3://b/sheets/v.tsv"}}  # fmt: skip
    videos = with_samples(seg, fetch)["videos"]
    assert asked == ["s3://b/sheets/v.tsv"]
    assert videos == {
        "a": {"path": "s3://b/clips/a.mp4", "targets": ["rabbit"], "ground_truth": "s3://b/gt/a",
              "prompts": {"rabbit": "s3://b/prompts/a.png"}},
        "f": {"path": "s3://b/frames/f", "targets": ["rabbit"]},
    }  # fmt: skip
    (tmp_path / "sheet.tsv").write_text("id\tpath\ttargets\nc\tclips/c.mp4\trabbit\n")
    with pytest.raises(ConfigError, match=r"s3://b/sheets/v.tsv, line 2, column path: the file clips/c.mp4 does not"):
        with_samples(seg, fetch)
    with pytest.raises(
        ConfigError, match=r"segment.samples.videos: the sample sheet s3://b/sheets/v.tsv does not exist"
    ):
        with_samples(seg, lambda url: None)  # storage has no such file
    with pytest.raises(ConfigError, match=r"globs.videos\[0\].pattern: 's3://b/\*.mp4' is a storage URL"):
        with_samples({**seg, "samples": {}, "globs": {"videos": [{"pattern": "s3://b/*.mp4", "targets": ["rabbit"]}]}})


# -- against a real S3 server


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free port of 127.0.0.1, with the bucket filled: (endpoint URL, boto3 client)."""
    pytest.importorskip("boto3", reason="boto3 is not installed (make env installs it with the s3 extra)")
    pytest.importorskip(
        "snakemake_storage_plugin_s3", reason="snakemake-storage-plugin-s3 is not installed (the s3 extra)"
    )
    server_mod = pytest.importorskip(
        "moto.server", reason="moto's server is not installed (moto[s3], flask, flask-cors)"
    )
    import av
    import boto3

    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test-key", aws_secret_access_key="test-secret")  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(DEMO_VIDEO), BUCKET, CLIP)
        client.put_object(Bucket=BUCKET, Key=SHEET, Body=f"id\tpath\ttargets\nclip\ts3://{BUCKET}/{CLIP}\trabbit\n")
        client.upload_file(str(ROOT / "resources/demo/bigbuckbunny_frame.jpg"), BUCKET, STILL)
        with av.open(str(DEMO_VIDEO)) as video:  # a DAVIS-style folder: 00000.jpg, 00001.jpg, ...
            for i, frame in zip(range(FOLDER_FRAMES), video.decode(video=0)):
                jpeg = io.BytesIO()
                frame.to_image().save(jpeg, "JPEG")
                client.put_object(Bucket=BUCKET, Key=f"{FOLDER}/{i:05d}.jpg", Body=jpeg.getvalue())
        yield endpoint, client
    finally:
        server.stop()


def run(cwd: Path, endpoint: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake on the workflow with the demo's config and the slice, the bucket's credentials in the
    environment variables the plugin reads (never in a config file), its endpoint as an option."""
    env = {**env_with_venv(), "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "test-key", "SNAKEMAKE_STORAGE_S3_SECRET_KEY": "test-secret"}  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(ROOT / "Snakefile"),
           "--configfile", str(ROOT / "config/demo.yaml"), "slice.yaml",
           "--storage-s3-endpoint-url", endpoint, *args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 or not check, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_a_video_from_the_bucket_goes_through_the_chain_and_its_overlay_lands_back(s3, tmp_path):
    """--default-storage-provider s3: the sheet, the video and the still come from the bucket, every result
    goes to it (nothing under results/ here), and a second run finds them up to date there. A local path
    of the config (the demo's video) is still read from this machine, and the models stay here."""
    import av
    import cv2
    import numpy as np

    endpoint, client = s3
    prefix = f"s3://{BUCKET}/run1"
    cfg = {"segment": {**SLICE["segment"], "samples": {"videos": f"s3://{BUCKET}/{SHEET}"},
                       "images": {"still": {"path": f"s3://{BUCKET}/{STILL}", "targets": ["rabbit"]}}}}  # fmt: skip
    (tmp_path / "slice.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/segment/clip/rabbit/overlay.mp4", "results/segment/images/still/rabbit/overlay.png",
               "results/segment/bigbuckbunny/meta.json"]  # fmt: skip
    storage = ["--default-storage-provider", "s3", "--default-storage-prefix", prefix]
    run(tmp_path, endpoint, *storage, "--", *targets)

    def fetched(key: str) -> bytes:
        return client.get_object(Bucket=BUCKET, Key=f"run1/{key}")["Body"].read()

    assert not (tmp_path / "results").exists(), "results were written here, not to the bucket"
    stored = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="run1/")["Contents"]}
    assert not {k for k in stored if k.startswith("run1/resources/")}, "the models went to the bucket"
    assert (tmp_path / "resources/models").is_dir()
    assert json.loads(fetched("results/segment/bigbuckbunny/meta.json"))["video"] == str(DEMO_VIDEO)
    meta = json.loads(fetched("results/segment/clip/meta.json"))
    # extract_frames read Snakemake's download of the bucket's clip
    assert Path(meta["video"]).parts[-4:] == ("s3", BUCKET, *CLIP.split("/")), meta["video"]
    assert meta["count"] == 15  # 1.2 s at 25 fps, every 2nd frame
    overlay = tmp_path / "overlay.mp4"
    overlay.write_bytes(fetched("results/segment/clip/rabbit/overlay.mp4"))
    with av.open(str(overlay)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == meta["count"] and frames[0].shape == (720, 1280, 3)
    still = cv2.imdecode(np.frombuffer(fetched("results/segment/images/still/rabbit/overlay.png"), np.uint8), 1)
    assert still.shape == cv2.imread(str(ROOT / "resources/demo/bigbuckbunny_frame.jpg")).shape
    assert_nothing_to_do(run(tmp_path, endpoint, *storage, "-n", "--", *targets))


def test_a_frame_folder_from_the_bucket_outlives_snakemakes_download(s3, tmp_path):
    """A frame folder in storage, results here: Snakemake deletes its download after the run, so the
    frames must not be links to it (a local folder's are); they hold the bucket's bytes."""
    endpoint, client = s3
    cfg = {"segment": {**SLICE["segment"], "frames": {"max_seconds": None, "stride": 1},
                       "videos": {"seq": {"path": f"s3://{BUCKET}/{FOLDER}", "targets": ["rabbit"], "fps": 10}}}}  # fmt: skip
    (tmp_path / "slice.yaml").write_text(yaml.safe_dump(cfg))
    run(tmp_path, endpoint, "--", "results/segment/seq/meta.json")
    meta = json.loads((tmp_path / "results/segment/seq/meta.json").read_text())
    assert meta["count"] == FOLDER_FRAMES and meta["source"]["frame_folder"]
    assert not (tmp_path / ".snakemake/storage/s3" / BUCKET / FOLDER).exists()  # the download is gone
    for i, name in enumerate(meta["files"]):
        frame = tmp_path / "results/segment/seq/frames" / name
        assert frame.is_file() and not frame.is_symlink(), f"{frame}: a link to the deleted download"
        assert frame.read_bytes() == client.get_object(Bucket=BUCKET, Key=f"{FOLDER}/{i:05d}.jpg")["Body"].read()


def test_results_in_storage_and_shards_are_refused_together(s3, tmp_path):
    """A shard's inner run is given the config, not the storage options: it would write its videos'
    results here, so the two are refused before any job, naming both."""
    (tmp_path / "slice.yaml").write_text(yaml.safe_dump(SLICE))
    storage = ["--default-storage-provider", "s3", "--default-storage-prefix", f"s3://{BUCKET}/run2"]
    proc = run(tmp_path, s3[0], "-n", *storage, "--set-resources", "segment_shard:clips=2", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "a sharded run (--set-resources segment_shard:clips=N" in out, out[-3000:]
