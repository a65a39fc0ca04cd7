"""The emulator speaks the documented multimodal embedding API (tested with plain httpx)."""

from __future__ import annotations

import base64
import concurrent.futures
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from opensearch_mm.emulator import FAULT_KINDS, Emulator
from opensearch_mm.models import MODELS

KEY = "sk-emulator-test-0123456789"
M2 = "ops-m2-encoder"
GME = "ops-gme-qwen2-vl-2b-instruct"

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
JPEG_URI = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
IMG_URL = "https://example.com/cat.jpg"


def path(service_id: str = M2, workspace: str = "default") -> str:
    return f"/v3/openapi/workspaces/{workspace}/multi-modal-embedding/{service_id}"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(KEY) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as c:
        yield c


def embed(
    c: httpx.Client, inputs: list[dict[str, Any]], service_id: str = M2, **kw: Any
) -> httpx.Response:
    return c.post(path(service_id), json={"input": inputs}, **kw)


def assert_error(r: httpx.Response, status: int, code: str, contains: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert set(body) == {"request_id", "latency", "code", "message"}
    assert body["latency"] == 0
    assert body["code"] == code
    assert contains in body["message"]
    assert body["request_id"] == body["request_id"].upper()
    return body


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


# ---------------------------------------------------------------------------------- success


def test_success_shape(client: httpx.Client) -> None:
    r = embed(client, [{"text": "hello world"}, {"image": IMG_URL}, {"image": PNG_URI}])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"request_id", "latency", "usage", "result"}
    rid = body["request_id"]
    assert rid == rid.upper() and len(rid) == 36 and rid.count("-") == 4
    assert isinstance(body["latency"], int) and body["latency"] >= 0
    # (token_count counts the images too: the API page's sample, an image alone, counts 28.)
    assert body["usage"] == {"image": 2, "image_token": 56, "text_token": 2, "token_count": 58}
    embs = body["result"]["embeddings"]
    assert [e["index"] for e in embs] == [0, 1, 2]
    for e in embs:
        assert len(e["embedding"]) == 768
        assert all(isinstance(x, float) for x in e["embedding"])
        assert norm(e["embedding"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("service_id", sorted(MODELS))
def test_dimensions_per_model(client: httpx.Client, service_id: str) -> None:
    r = embed(client, [{"text": "a"}, {"image": JPEG_URI}], service_id=service_id)
    assert r.status_code == 200, r.text
    dim = MODELS[service_id].dimensions
    assert [len(e["embedding"]) for e in r.json()["result"]["embeddings"]] == [dim, dim]


def test_any_workspace(client: httpx.Client) -> None:
    r = client.post(path(workspace="my-ws_1"), json={"input": [{"text": "x"}]})
    assert r.status_code == 200


def test_deterministic_and_distinct(client: httpx.Client) -> None:
    a = embed(client, [{"text": "cat"}, {"text": "dog"}, {"text": "cat"}]).json()
    b = embed(client, [{"text": "cat"}]).json()
    va, vd, va2 = (e["embedding"] for e in a["result"]["embeddings"])
    assert va == va2 == b["result"]["embeddings"][0]["embedding"]
    assert va != vd
    # text and image with the same string differ; models differ
    vi = embed(client, [{"image": "https://x/cat"}]).json()["result"]["embeddings"][0]
    vt = embed(client, [{"text": "https://x/cat"}]).json()["result"]["embeddings"][0]
    assert vi["embedding"] != vt["embedding"]
    large = embed(client, [{"text": "cat"}], service_id="ops-m2-encoder-large").json()
    assert len(large["result"]["embeddings"][0]["embedding"]) == 1024


def test_deterministic_across_processes(emu: Emulator, client: httpx.Client) -> None:
    mine = embed(client, [{"text": "across processes"}]).json()
    code = (
        "from opensearch_mm.emulator import Emulator\n"
        "import httpx, json\n"
        "with Emulator('k') as e:\n"
        "    r = httpx.post(e.url + '/v3/openapi/workspaces/w/multi-modal-embedding/"
        "ops-m2-encoder', json={'input': [{'text': 'across processes'}]},"
        " headers={'Authorization': 'Bearer k'})\n"
        "    print(json.dumps(r.json()['result']['embeddings'][0]['embedding']))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout) == mine["result"]["embeddings"][0]["embedding"]


def test_seed_changes_vectors() -> None:
    vecs = []
    for seed in (0, 1):
        with Emulator(KEY, seed=seed) as e:
            r = httpx.post(
                e.url + path(),
                json={"input": [{"text": "x"}]},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            vecs.append(r.json()["result"]["embeddings"][0]["embedding"])
    assert vecs[0] != vecs[1]


def test_m2_ignores_image_beside_text(client: httpx.Client) -> None:
    both = embed(client, [{"text": "a cat", "image": PNG_URI}]).json()
    text = embed(client, [{"text": "a cat"}]).json()
    assert (
        both["result"]["embeddings"][0]["embedding"] == text["result"]["embeddings"][0]["embedding"]
    )
    assert both["usage"]["image"] == 0


def test_combined_model_uses_both(client: httpx.Client) -> None:
    both = embed(client, [{"text": "a cat", "image": PNG_URI}], service_id=GME).json()
    text = embed(client, [{"text": "a cat"}], service_id=GME).json()
    image = embed(client, [{"image": PNG_URI}], service_id=GME).json()
    vb = both["result"]["embeddings"][0]["embedding"]
    assert vb != text["result"]["embeddings"][0]["embedding"]
    assert vb != image["result"]["embeddings"][0]["embedding"]
    assert both["usage"]["image"] == 1


def test_token_count_counts_words_and_cjk(client: httpx.Client) -> None:
    r = embed(client, [{"text": "hello big world"}, {"text": "你好世界"}]).json()
    assert r["usage"] == {"image": 0, "image_token": 0, "text_token": 7, "token_count": 7}


def test_options_allowed(client: httpx.Client) -> None:
    for options in (None, {}, {"anything": 1}):
        r = client.post(path(), json={"input": [{"text": "x"}], "options": options})
        assert r.status_code == 200, r.text
    r = client.post(path(), json={"input": [{"text": "x"}], "options": "nope"})
    assert_error(r, 400, "InvalidParameter", "options")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "webp", "bmp", "tiff"])
def test_image_formats_accepted(client: httpx.Client, fmt: str) -> None:
    magic = {
        "png": PNG,
        "jpeg": JPEG,
        "gif": b"GIF89a" + b"\x00" * 10,
        "webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,
        "bmp": b"BM" + b"\x00" * 20,
        "tiff": b"II*\x00" + b"\x00" * 10,
    }[fmt]
    uri = f"data:image/{fmt};base64," + base64.b64encode(magic).decode()
    assert embed(client, [{"image": uri}]).status_code == 200


def test_32_inputs_ok(client: httpx.Client) -> None:
    r = embed(client, [{"text": f"t{i}"} for i in range(32)])
    assert r.status_code == 200
    assert len(r.json()["result"]["embeddings"]) == 32


# ----------------------------------------------------------------------------------- errors


def test_401_missing_and_wrong_key(emu: Emulator) -> None:
    url = emu.url + path()
    body = {"input": [{"text": "x"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        r = httpx.post(url, json=body, headers=headers)
        b = assert_error(r, 401, "Unauthorized", "Invalid or missing API key.")
        assert KEY not in r.text and "wrong" not in r.text
        assert b["message"] == "Invalid or missing API key."
    assert all("authorization" not in rec.headers for rec in emu.requests_log)


def test_unknown_service_id(client: httpx.Client) -> None:
    r = embed(client, [{"text": "x"}], service_id="ops-nope")
    assert_error(r, 400, "ServiceIdNotExist", "service_id is not exist.")


@pytest.mark.parametrize(
    ("url_path", "status"),
    [
        ("/", 404),
        ("/v3/openapi/workspaces/default/text-embedding/ops-m2-encoder", 404),
        ("/v3/openapi/workspaces/default/multi-modal-embedding/", 404),
        ("/v3/openapi/workspaces/default/multi-modal-embedding/a/b", 404),
    ],
)
def test_404_other_paths(client: httpx.Client, url_path: str, status: int) -> None:
    assert_error(client.post(url_path, json={}), status, "NotFound")
    assert_error(client.get(url_path), status, "NotFound")


def test_wrong_method_on_api_path(client: httpx.Client) -> None:
    r = client.get(path())
    assert r.status_code in (404, 405)
    assert set(r.json()) == {"request_id", "latency", "code", "message"}


@pytest.mark.parametrize(
    ("body", "contains"),
    [
        ({}, "input"),
        ({"input": None}, "input"),
        ({"input": "text"}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"text": f"t{i}"} for i in range(33)]}, "32"),
        ({"input": ["plain string"]}, "input[0]"),
        ({"input": [{"text": "ok"}, {}]}, "input[1]"),
        ({"input": [{"text": 3}]}, "input[0].text"),
        ({"input": [{"image": 3}]}, "input[0].image"),
        ({"input": [{"text": ""}]}, "input[0].text"),
        ({"input": [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"image": "x.jpg"}]}, "input[3]"),
        ({"input": [{"image": "ftp://example.com/a.jpg"}]}, "input[0].image"),
        ({"input": [{"image": "https://"}]}, "input[0].image"),
        ({"input": [{"image": "data:image/png;base64,!!!notbase64"}]}, "input[0].image"),
        ({"input": [{"image": "data:image/png;base64,"}]}, "input[0].image"),
        (
            {"input": [{"image": "data:image/png;base64," + base64.b64encode(b"hello").decode()}]},
            "input[0].image",
        ),
        ({"input": [{"image": base64.b64encode(PNG).decode()}]}, "input[0].image"),
        ({"input": [{"image": "data:text/plain;base64," + base64.b64encode(PNG).decode()}]}, ""),
        ([{"text": "x"}], "JSON"),
    ],
)
def test_invalid_parameter(client: httpx.Client, body: Any, contains: str) -> None:
    r = client.post(
        path(), content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "InvalidParameter", contains)


def test_bad_image_message_names_index(client: httpx.Client) -> None:
    r = embed(client, [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"image": "nope"}])
    body = assert_error(r, 400, "InvalidParameter")
    assert body["message"] == "input[3].image: not a URL or a data:image base64 URI"


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"input": [', "é".encode("latin-1")])
def test_json_parse_error(client: httpx.Client, raw: bytes) -> None:
    r = client.post(path(), content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, "InvalidParameter", "JSON parse error")


def test_body_over_8_mib(emu: Emulator, client: httpx.Client) -> None:
    payload = base64.b64encode(PNG + b"\x00" * (6 * 1024 * 1024 + 100)).decode()
    big = {"input": [{"image": "data:image/png;base64," + payload}]}
    raw = orjson.dumps(big)
    assert len(raw) > 8 * 1024 * 1024
    r = client.post(path(), content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, "InvalidParameter", "request body exceeds 8 MB")
    # the connection is still usable (the body was drained), and a body just under is fine
    ok = embed(client, [{"text": "after"}])
    assert ok.status_code == 200
    assert emu.stats.connections == 1
    under = "data:image/png;base64," + base64.b64encode(PNG + b"\x00" * (5 * 1024 * 1024)).decode()
    assert embed(client, [{"image": under}]).status_code == 200


def test_body_limit_is_8_mib_exactly(client: httpx.Client) -> None:
    limit = 8 * 1024 * 1024
    head = b'{"input": [{"text": "x"}], "options": {"pad": "'
    tail = b'"}}'
    exact = head + b"a" * (limit - len(head) - len(tail)) + tail
    assert len(exact) == limit
    assert client.post(path(), content=exact).status_code == 200
    over = head + b"a" * (limit - len(head) - len(tail) + 1) + tail
    assert_error(client.post(path(), content=over), 400, "InvalidParameter", "8 MB")


def test_chunked_request_body(client: httpx.Client) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"input": [{"te'
        yield b'xt": "chunked"}]}'

    r = client.post(path(), content=gen())
    assert r.status_code == 200, r.text
    direct = embed(client, [{"text": "chunked"}])
    assert r.json()["result"] == direct.json()["result"]


@pytest.mark.parametrize("size", [b"-1", b"FFFFFFFFFFFFFFFFFF"], ids=["negative", "huge"])
def test_a_chunk_size_out_of_range_is_a_400_at_once(emu: Emulator, size: bytes) -> None:
    # (A negative size read to the end of the connection, so the request hung; one past an
    # index crashed the handler with no answer at all.)
    import socket

    host, port = emu.url.removeprefix("http://").split(":")
    request = (
        (
            f"POST {path()} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + size
        + b"\r\nabc\r\n0\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while b"InvalidParameter" not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a 400 InvalidParameter: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"malformed chunked request body" in answer


# ------------------------------------------------------------------------------- throttling


def test_qps_burst_then_429(emu: Emulator, client: httpx.Client) -> None:
    emu.qps = 5
    statuses = [embed(client, [{"text": "x"}]).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    r = embed(client, [{"text": "x"}])
    if r.status_code == 200:  # a token may have refilled; exhaust again
        r = next(
            resp
            for resp in (embed(client, [{"text": "x"}]) for _ in range(10))
            if resp.status_code == 429
        )
    assert_error(
        r, 429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
    )
    assert emu.stats.throttled >= 1
    time.sleep(0.45)  # ~2 tokens refill at 5/s
    assert embed(client, [{"text": "x"}]).status_code == 200


def test_a_bucket_that_charges_refusals_stays_shut_while_fed(
    emu: Emulator, client: httpx.Client
) -> None:
    emu.set_throttle("bucket", 2, charge_refusals=True)
    assert [embed(client, [{"text": "x"}]).status_code for _ in range(2)] == [200, 200]
    for _ in range(20):  # each refusal costs a token: a debt of a full bucket
        assert embed(client, [{"text": "x"}]).status_code == 429
    time.sleep(0.6)  # the plain bucket would have a token again; this one is still in debt
    assert embed(client, [{"text": "x"}]).status_code == 429
    emu.set_throttle("bucket", 2)  # a fresh plain bucket
    assert embed(client, [{"text": "x"}]).status_code == 200


def test_a_queue_holds_requests_in_line_and_refuses_a_wait_too_long(
    emu: Emulator, client: httpx.Client
) -> None:
    emu.set_throttle("queue", 5, window=0.5)  # one each 0.2 s, held up to 0.5 s
    started = time.monotonic()
    statuses = [embed(client, [{"text": "x"}]).status_code for _ in range(4)]
    took = time.monotonic() - started
    # One after the other: each waits its turn in line (0.2 s apart), none refused.
    assert statuses == [200] * 4
    assert took >= 0.55
    with httpx.Client(base_url=emu.url, headers=client.headers) as other:
        emu.set_throttle("queue", 5, window=0.3)
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: embed(other, [{"text": "x"}]).status_code, range(6)))
    # Six at once: the first goes, the second waits 0.2 s, a third would wait 0.4 s (one
    # arriving 0.1 s late, on a busy machine, would not).
    assert codes.count(200) in (2, 3) and codes.count(429) == 6 - codes.count(200)


def test_throttled_requests_take_no_token(emu: Emulator, client: httpx.Client) -> None:
    emu.qps = 2
    assert [embed(client, [{"text": "x"}]).status_code for _ in range(2)] == [200, 200]
    for _ in range(20):  # hammering while empty does not push the refill back
        embed(client, [{"text": "x"}])
    time.sleep(0.6)
    assert embed(client, [{"text": "x"}]).status_code == 200


def test_runtime_qps_change(emu: Emulator, client: httpx.Client) -> None:
    assert emu.qps is None
    assert all(embed(client, [{"text": "x"}]).status_code == 200 for _ in range(30))
    emu.qps = 1
    codes = [embed(client, [{"text": "x"}]).status_code for _ in range(3)]
    assert codes[0] == 200 and 429 in codes
    emu.qps = 50
    assert all(embed(client, [{"text": "x"}]).status_code == 200 for _ in range(20))
    emu.qps = None
    assert all(embed(client, [{"text": "x"}]).status_code == 200 for _ in range(60))


def test_qps_constructor_argument() -> None:
    with Emulator(KEY, qps=3) as e, httpx.Client(base_url=e.url) as c:
        codes = [
            c.post(
                path(), json={"input": [{"text": "x"}]}, headers={"Authorization": f"Bearer {KEY}"}
            ).status_code
            for _ in range(5)
        ]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]


def test_latency_and_concurrency(emu: Emulator) -> None:
    emu.latency_ms = 200

    def one(i: int) -> int:
        with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            return embed(c, [{"text": str(i)}]).status_code

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(8))) == [200] * 8
    elapsed = time.monotonic() - t0
    assert 0.2 <= elapsed < 1.2  # overlapping, not 8 x 200 ms
    assert emu.stats.max_in_flight >= 4
    emu.latency_ms = 0
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        assert embed(c, [{"text": "fast"}]).json()["latency"] < 150


# ----------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "status", "code", "message"),
    [
        (
            "throttle",
            429,
            "Throttling.RateQuota",
            "Requests rate limit exceeded, please try again later.",
        ),
        ("throttling", 429, "Throttling", "Requests throttling triggered."),
        (
            "quota",
            429,
            "Throttling.AllocationQuota",
            "Allocated quota exceeded, please increase your quota limit.",
        ),
        (
            "server_error",
            500,
            "InternalServerError",
            "An internal error has occured, please try again later or contact service support.",
        ),
    ],
)
def test_error_faults(
    emu: Emulator, client: httpx.Client, kind: str, status: int, code: str, message: str
) -> None:
    emu.inject(kind, count=2, retry_after=3)
    for _ in range(2):
        r = embed(client, [{"text": "x"}])
        body = assert_error(r, status, code)
        assert body["message"] == message
        assert r.headers["retry-after"] == "3"
    assert embed(client, [{"text": "x"}]).status_code == 200
    s = emu.stats
    assert s.by_status == {status: 2, 200: 1}
    assert s.faults == 2
    assert s.throttled == (2 if status == 429 else 0)


def test_fault_without_retry_after(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("throttle")
    r = embed(client, [{"text": "x"}])
    assert r.status_code == 429 and "retry-after" not in r.headers
    emu.inject("server_error", retry_after=0.5)
    assert embed(client, [{"text": "x"}]).headers["retry-after"] == "0.5"


def test_fault_drop(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("drop")
    with pytest.raises(httpx.TransportError):
        embed(client, [{"text": "x"}])
    assert embed(client, [{"text": "x"}]).status_code == 200
    s = emu.stats
    assert s.dropped == 1 and s.by_status == {200: 1} and s.requests == 2


def test_fault_malformed(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("malformed")
    r = embed(client, [{"text": "x"}])
    assert r.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(r.content)
    assert embed(client, [{"text": "x"}]).json()["result"]["embeddings"]


def test_fault_incomplete(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("incomplete")
    r = embed(client, [{"text": "a"}, {"text": "b"}, {"text": "c"}])
    assert r.status_code == 200
    embs = r.json()["result"]["embeddings"]
    assert len(embs) == 2
    assert len(embed(client, [{"text": "a"}, {"text": "b"}]).json()["result"]["embeddings"]) == 2


def test_fault_slow(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("slow", delay=0.3)
    t0 = time.monotonic()
    r = embed(client, [{"text": "x"}])
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.3
    assert r.json()["latency"] >= 300
    with pytest.raises(httpx.ReadTimeout):
        emu.inject("slow", delay=0.5)
        embed(client, [{"text": "x"}], timeout=0.1)


def test_fault_bad_gateway(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("bad_gateway", retry_after=1)
    r = embed(client, [{"text": "x"}])
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["retry-after"] == "1"
    with pytest.raises(ValueError):
        r.json()


def test_faults_come_after_auth_and_path(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("server_error")
    assert client.post("/nope", json={}).status_code == 404
    assert httpx.post(emu.url + path(), json={"input": [{"text": "x"}]}).status_code == 401
    assert emu.pending_faults == 1
    assert embed(client, [{"text": "x"}]).status_code == 500
    assert emu.pending_faults == 0


def test_inject_unknown_kind(emu: Emulator) -> None:
    with pytest.raises(ValueError):
        emu.inject("explode")
    with pytest.raises(ValueError):
        emu.set_random_faults(0.5, ["explode"])
    assert set(FAULT_KINDS) == {
        "throttle",
        "throttling",
        "quota",
        "server_error",
        "drop",
        "malformed",
        "incomplete",
        "slow",
        "trickle",
        "bad_gateway",
    }


def test_clear_faults(emu: Emulator, client: httpx.Client) -> None:
    emu.inject("server_error", count=5)
    emu.set_random_faults(1.0, ["throttle"])
    emu.clear_faults()
    assert emu.pending_faults == 0
    assert embed(client, [{"text": "x"}]).status_code == 200


def test_random_faults(emu: Emulator, client: httpx.Client) -> None:
    emu.set_random_faults(0.5, ["throttle", "server_error"], seed=7)
    codes = [embed(client, [{"text": "x"}]).status_code for _ in range(200)]
    failed = sum(c != 200 for c in codes)
    assert 60 < failed < 140
    assert set(codes) == {200, 429, 500}
    emu.set_random_faults(0)
    assert all(embed(client, [{"text": "x"}]).status_code == 200 for _ in range(20))


def test_random_faults_reproducible_with_seed(emu: Emulator, client: httpx.Client) -> None:
    runs = []
    for _ in range(2):
        emu.set_random_faults(0.3, ["throttle", "server_error", "malformed"], seed=42)
        runs.append([embed(client, [{"text": "x"}]).status_code for _ in range(40)])
    assert runs[0] == runs[1]


def test_random_all_kinds_survive(emu: Emulator) -> None:
    emu.set_random_faults(0.5, list(FAULT_KINDS), seed=1, slow_delay=0.01)
    outcomes: set[str] = set()
    with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for _ in range(100):
            try:
                outcomes.add(str(embed(c, [{"text": "a"}, {"text": "b"}]).status_code))
            except httpx.TransportError:
                outcomes.add("dropped")
    assert {"200", "429", "500", "502", "dropped"} <= outcomes
    assert emu.stats.requests == 100


# ------------------------------------------------------------------------- stats and logging


def test_stats_and_connection_reuse(emu: Emulator, client: httpx.Client) -> None:
    for _ in range(5):
        embed(client, [{"text": "a"}, {"text": "b"}])
    embed(client, [{"text": "a"}], service_id="nope")
    s = emu.stats
    assert s.requests == 6
    assert s.by_status == {200: 5, 400: 1}
    assert s.inputs_embedded == 10
    assert s.connections == 1  # keep-alive: one pooled connection
    assert s.max_in_flight == 1
    assert s.throttled == 0
    # new clients => new connections
    for _ in range(2):
        with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            embed(c, [{"text": "x"}])
    assert emu.stats.connections == 3
    emu.reset_stats()
    s = emu.stats
    assert (s.requests, s.by_status, s.inputs_embedded, s.connections) == (0, {}, 0, 0)
    assert emu.requests_log == []


def test_requests_log(emu: Emulator, client: httpx.Client) -> None:
    embed(client, [{"text": str(i)} for i in range(32)])
    embed(client, [{"text": "x"}], headers={"X-Trace": "abc"})
    client.post(path(), content=b"{bad")
    log = emu.requests_log
    assert [r.n_inputs for r in log] == [32, 1, None]
    assert [r.status for r in log] == [200, 200, 400]
    assert log[0].body_bytes > 0 and log[0].method == "POST" and log[0].path == path()
    assert log[1].headers["x-trace"] == "abc"
    for rec in log:
        assert "authorization" not in rec.headers
        assert all(KEY not in v for v in rec.headers.values())


def test_max_in_flight(emu: Emulator) -> None:
    emu.latency_ms = 150
    barrier = threading.Barrier(5)

    def one(_: int) -> int:
        with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            barrier.wait()
            return embed(c, [{"text": "x"}]).status_code

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        list(pool.map(one, range(5)))
    assert emu.stats.max_in_flight == 5
    assert emu.stats.connections == 5


# -------------------------------------------------------------------------------- lifecycle


def test_start_stop_and_url() -> None:
    emu = Emulator(KEY)
    assert not emu.running
    emu.start()
    try:
        assert emu.url == f"http://127.0.0.1:{emu.port}"
        assert emu.endpoint == f"127.0.0.1:{emu.port}"
        assert emu.api_key == KEY
        with httpx.Client(base_url=emu.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
            assert embed(c, [{"text": "x"}]).status_code == 200
            emu.stop()
            with pytest.raises(httpx.TransportError):
                embed(c, [{"text": "x"}])
    finally:
        emu.stop()
    assert not emu.running


def test_client_disconnect_is_quiet(emu: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    import socket

    emu.latency_ms = 100
    s = socket.create_connection(("127.0.0.1", emu.port))
    body = orjson.dumps({"input": [{"text": "x"}]})
    s.sendall(
        f"POST {path()} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    s.close()  # gone before the answer
    # half a body, then gone
    s = socket.create_connection(("127.0.0.1", emu.port))
    s.sendall(f"POST {path()} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
    s.close()
    time.sleep(0.3)
    err = capfd.readouterr().err
    assert "Traceback" not in err


def test_cli_subprocess() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opensearch_mm.emulator",
            "--port",
            "0",
            "--api-key",
            "cli-key",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = httpx.post(
            url + path(GME),
            json={"input": [{"text": "x"}]},
            headers={"Authorization": "Bearer cli-key"},
            timeout=10,
        )
        assert r.status_code == 200
        assert len(r.json()["result"]["embeddings"][0]["embedding"]) == 1536
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert proc.stderr is not None
    assert "cli-key" not in proc.stderr.read()
