"""`medgemma serve` through real clients: the official `openai` Python client, and plain HTTP in ollama's shape.

The server is the real binary (target/release/medgemma, built by `cargo test --release` before these tests run)
on the tiny multimodal fixture converted to F32 by the real converter, on 127.0.0.1 only. Answers are greedy and
compared with `medgemma run` on the same files: the server must compute exactly what the CLI computes, whether a
request comes alone or with seven others (continuous batching must not change a greedy answer).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from conftest import REPO, fixture_dir, run_converter

BINARY = Path(os.environ.get("MEDGEMMA_BIN", REPO / "target" / "release" / "medgemma"))
CHEST = REPO / "tests" / "fixtures" / "images" / "chest.png"
SKIN = REPO / "tests" / "fixtures" / "images" / "skin.png"
MAX_TOKENS = 24
PROMPTS = [
    "Describe the chest X-ray.",
    "Is there a pleural effusion?",
    "List three causes of pneumonia.",
    "What is a normal heart rate?",
    "Summarise: patient with cough and fever.",
    "Explain cardiomegaly briefly.",
    "What does CT stand for?",
    "Name a sign of pneumothorax.",
]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MEDGEMMA_")}
    e["HF_HUB_OFFLINE"] = "1"
    e["MEDGEMMA_NO_IMAGE_CACHE"] = "1"
    return e


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} is missing: run `cargo build --release` first (scripts/test does)", pytrace=False)
    out = tmp_path_factory.mktemp("serve-gguf")
    run = run_converter(fixture_dir("mm"), out, "--outtype", "f32")
    assert run.returncode == 0, run.stderr
    gguf = next(out.glob("tiny-medgemma-mm*.gguf"))
    mmproj = next(out.glob("mmproj-*.gguf"))
    return gguf, mmproj


class Server:
    """A running `medgemma serve`; its stderr is collected line by line."""

    def __init__(self, model: tuple[Path, Path], *args: str, extra_env: dict | None = None):
        gguf, mmproj = model
        cmd = [str(BINARY), "serve", "-m", str(gguf), "--mmproj", str(mmproj), "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**env(), **(extra_env or {})})
        self.lines: list[str] = []
        self.port: int | None = None
        ready = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(60) and self.port, "".join(self.lines)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            status, _, _ = self.get("/health")
            if status == 200:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the server never became ready:\n" + self.stderr())

    def stderr(self) -> str:
        return "".join(self.lines)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        return self.request("GET", path, None, headers)

    def request(self, method: str, path: str, body: bytes | None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def server(model):
    s = Server(model, "--parallel", "8", "-n", str(MAX_TOKENS))
    yield s
    code = s.stop()
    assert code == 0, f"SIGTERM should exit 0, got {code}:\n{s.stderr()}"
    assert "server stopped" in s.stderr()


def run_answer(model: tuple[Path, Path], prompt: str, *args: str) -> str:
    gguf, mmproj = model
    out = subprocess.run([str(BINARY), "run", "-m", str(gguf), "--mmproj", str(mmproj), "-n", str(MAX_TOKENS),
                          "--json", *args, prompt], capture_output=True, text=True, env=env(), timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["text"]


def model_id(server: Server) -> str:
    return server.client().models.list().data[0].id


def ask(server: Server, prompt: str, **kw):
    return server.client().chat.completions.create(
        model=model_id(server), messages=[{"role": "user", "content": prompt}], **kw)


def test_models_lists_the_model_with_its_modalities(server):
    status, _, body = server.get("/v1/models")
    assert status == 200
    data = json.loads(body)["data"]
    assert len(data) == 1 and data[0]["id"].startswith("tiny-medgemma-mm")
    assert data[0]["input_modalities"] == ["text", "image"]
    status, _, body = server.get("/api/tags")
    assert status == 200 and json.loads(body)["models"][0]["name"] == data[0]["id"]


def test_answer_equals_run(server, model):
    expected = run_answer(model, PROMPTS[0])
    answer = ask(server, PROMPTS[0])
    assert answer.choices[0].message.content == expected
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_streamed_answer_equals_run(server, model):
    expected = run_answer(model, PROMPTS[1])
    stream = ask(server, PROMPTS[1], stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == expected
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_image_as_data_url_equals_run_image(server, model):
    prompt = "Describe this image."
    expected = run_answer(model, prompt, "--image", str(CHEST))
    answer = server.client().chat.completions.create(model=model_id(server), messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(CHEST)}},
        {"type": "text", "text": prompt}]}])
    assert answer.choices[0].message.content == expected
    # The same image again: its embedding and the prompt's beginning come from the cache.
    again = server.client().chat.completions.create(model=model_id(server), messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(CHEST)}},
        {"type": "text", "text": prompt}]}])
    assert again.choices[0].message.content == expected
    # All but the last position (evaluated again for its logits).
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1


def test_eight_concurrent_clients_get_the_sequential_answers(server):
    sequential = [ask(server, p).choices[0].message.content for p in PROMPTS]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda p: ask(server, p).choices[0].message.content, PROMPTS))
    assert concurrent == sequential
    assert len(set(sequential)) > 1, "the prompts should give different answers"


def test_stop_strings_cut_the_answer(server):
    full = ask(server, PROMPTS[2]).choices[0].message.content
    stop = full[5:8]
    assert stop and stop in full
    cut = ask(server, PROMPTS[2], stop=[stop])
    assert cut.choices[0].message.content == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in ask(server, PROMPTS[2], stop=[stop], stream=True)
                       if c.choices)
    assert streamed == full[: full.index(stop)]


def test_json_object_format_gives_json(server):
    answer = ask(server, "Give the findings as JSON.", response_format={"type": "json_object"}, max_tokens=24)
    text = answer.choices[0].message.content
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # cut at max_tokens: still the start of an object
        assert text.lstrip().startswith("{")


def ollama_chat(server: Server, body: dict) -> tuple[int, list[dict]]:
    status, _, raw = server.request("POST", "/api/chat", json.dumps(body).encode())
    return status, [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def test_ollama_chat_gives_the_same_answers(server, model):
    expected = run_answer(model, PROMPTS[3])
    msgs = [{"role": "user", "content": PROMPTS[3]}]
    status, lines = ollama_chat(server, {"model": model_id(server), "messages": msgs})
    assert status == 200
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0
    assert "".join(l["message"]["content"] for l in lines) == expected
    status, lines = ollama_chat(server, {"model": model_id(server), "messages": msgs, "stream": False})
    assert status == 200 and len(lines) == 1 and lines[0]["message"]["content"] == expected
    prompt = "Describe this image."
    image = base64.b64encode(CHEST.read_bytes()).decode()
    status, lines = ollama_chat(server, {"model": model_id(server), "stream": False,
                                         "messages": [{"role": "user", "content": prompt, "images": [image]}]})
    assert status == 200 and lines[0]["message"]["content"] == run_answer(model, prompt, "--image", str(CHEST))


def test_error_statuses(server):
    client = server.client()
    name = model_id(server)
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    assert "not served here" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "a"}], n=2)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": "word " * 3000}])
    assert e.value.code == "context_length_exceeded"
    assert re.search(r"takes \d+ positions .* holds 2048", e.value.message), e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.org/xray.png"}}]}])
    assert "never fetches" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": str(CHEST)}}]}])
    assert "--allow-path" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"no").decode()}}]}])
    assert "request image 1" in e.value.message
    status, _, body = server.request("POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]["message"]
    status, _, body = server.get("/v1/nothing")
    assert status == 404 and json.loads(body)["error"]["type"] == "not_found_error"
    status, body = ollama_chat(server, {"messages": []})
    assert status == 400 and body[0]["error"].startswith("messages")
    # Nothing of the prompts reaches the log.
    assert not any(p in server.stderr() for p in PROMPTS)


def test_body_and_image_limits_and_allowed_paths(model):
    s = Server(model, "--max-body-mb", "1", "--max-images", "1", "-n", str(MAX_TOKENS),
               "--allow-path", str(CHEST.parent))
    try:
        prompt = "Describe this image."
        by_path = s.client().chat.completions.create(model=model_id(s), messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": str(CHEST)}}, {"type": "text", "text": prompt}]}])
        assert by_path.choices[0].message.content == run_answer(model, prompt, "--image", str(CHEST))
        with pytest.raises(openai.BadRequestError) as e:
            s.client().chat.completions.create(model=model_id(s), messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": str(REPO / "README.md")}}]}])
        assert "--allow-path" in e.value.message
        big = json.dumps({"messages": [{"role": "user", "content": "x" * (2 << 20)}]}).encode()
        status, _, body = s.request("POST", "/v1/chat/completions", big)
        assert status == 413 and "--max-body-mb" in json.loads(body)["error"]["message"]
        two = {"type": "image_url", "image_url": {"url": data_url(CHEST)}}
        with pytest.raises(openai.APIStatusError) as e:
            s.client().chat.completions.create(model=model_id(s),
                                               messages=[{"role": "user", "content": [two, two]}])
        assert e.value.status_code == 413 and "--max-images" in e.value.message
    finally:
        assert s.stop() == 0


def test_api_key(model):
    s = Server(model, "-n", "4", extra_env={"MEDGEMMA_API_KEY": "s3cret"})
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        with pytest.raises(openai.AuthenticationError):
            s.client("s3cre").chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        assert s.client("s3cret").models.list().data
        status, _, _ = s.get("/health")
        assert status == 200, "health needs no key"
        status, _, body = s.request("POST", "/api/chat", b"{}")
        assert status == 401 and "API key" in json.loads(body)["error"]
        assert "s3cret" not in s.stderr()
    finally:
        assert s.stop() == 0


def long_stream(s: Server):
    """A request that generates for a few seconds, streamed; returns the open response after its first chunk."""
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({
        "messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 2000, "stream": True}),
        headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    assert r.readline().startswith(b"data: ")
    return conn, r


def test_a_client_that_leaves_frees_its_sequence(model):
    s = Server(model, "--parallel", "1", "-n", "2000")
    try:
        conn, _ = long_stream(s)
        conn.sock.shutdown(2)
        conn.close()
        started = time.time()
        answer = s.client().chat.completions.create(model=model_id(s), max_tokens=8,
                                                    messages=[{"role": "user", "content": PROMPTS[1]}])
        assert answer.choices[0].message.content
        deadline = time.time() + 10
        while "went away" not in s.stderr() and time.time() < deadline:
            time.sleep(0.05)
        assert re.search(r"request 1: cancelled after \d+ tokens \(the client went away\)", s.stderr()), s.stderr()
        assert not re.search(r"request 1: .* 2000 tokens", s.stderr()), "the abandoned answer ran to the end"
        assert time.time() - started < 10
    finally:
        assert s.stop() == 0


def test_a_full_queue_answers_503_with_retry_after(model):
    s = Server(model, "--parallel", "1", "--queue", "0", "-n", "2000")
    try:
        conn, r = long_stream(s)
        status, headers, body = s.request("POST", "/v1/chat/completions",
                                          json.dumps({"messages": [{"role": "user", "content": "a"}]}).encode())
        assert status == 503, body
        assert headers.get("retry-after") == "1"
        assert json.loads(body)["error"]["code"] == "server_busy"
        r.read()
        conn.close()
    finally:
        assert s.stop() == 0


def test_sigint_ends_answers_in_flight_and_exits_0(model):
    s = Server(model, "--parallel", "1", "-n", "2000")
    conn, r = long_stream(s)
    started = time.time()
    assert s.stop(signal.SIGINT) == 0
    assert time.time() - started < 10
    rest = r.read().decode()
    conn.close()
    assert "shutting down" in rest
    assert "cancelled (the server is stopping)" in s.stderr()


def chest_dicom(path: Path) -> Path:
    """A CT-like 16-bit DICOM of a synthetic gradient with a window, and made-up patient identifiers."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "PID-0042-SECRET"
    y, x = np.mgrid[0:64, 0:48]
    arr = (x * 20 + y * 10).astype(np.uint16)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = -400, 1500
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_over_http_equals_run_on_the_file(server, model, tmp_path):
    dcm = chest_dicom(tmp_path / "ct.dcm")
    prompt = "Describe this CT slice."
    expected = run_answer(model, prompt, "--image", str(dcm))
    url = "data:application/dicom;base64," + base64.b64encode(dcm.read_bytes()).decode()
    answer = server.client().chat.completions.create(model=model_id(server), messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]}])
    assert answer.choices[0].message.content == expected
    status, lines = ollama_chat(server, {"stream": False, "messages": [
        {"role": "user", "content": prompt, "images": [base64.b64encode(dcm.read_bytes()).decode()]}]})
    assert status == 200 and lines[0]["message"]["content"] == expected
    assert "Secret" not in server.stderr() and "PID-0042" not in server.stderr()
