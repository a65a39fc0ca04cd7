"""``opensearch-mm demo``: output structure, the self-check, credentials, what was sent."""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from opensearch_mm import demo
from opensearch_mm.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
RANKED = re.compile(r"^    (\d)\. ([+-]\d\.\d{4})  (.+)$")
ENV = ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE")
KNOWN_KEY = "demo-secret-key-1234567890"


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def known_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the demo's emulator use a key the test knows, to check it is never printed."""
    monkeypatch.setattr("secrets.token_urlsafe", lambda n=16: KNOWN_KEY)
    return KNOWN_KEY


def _section(out: str, title: str) -> str:
    """The text of one engine's section (from its heading to the next heading)."""
    start = out.index(f"\n{title}\n{'=' * len(title)}\n")
    rest = out[start + 1 :]
    ends = [rest.find(f"\n{t}\n") for t in ("LangChain", "LlamaIndex", "What was sent")]
    ends = [e for e in ends if e > 0]
    return rest[: min(ends)] if ends else rest


def _ranked_lists(text: str) -> list[list[tuple[int, float, str]]]:
    lists: list[list[tuple[int, float, str]]] = []
    current: list[tuple[int, float, str]] = []
    for line in text.splitlines():
        m = RANKED.match(line)
        if m:
            current.append((int(m.group(1)), float(m.group(2)), m.group(3)))
        elif current:
            lists.append(current)
            current = []
    if current:
        lists.append(current)
    return lists


def test_cli_demo_runs_both_adapters_against_the_emulator(
    capsys: pytest.CaptureFixture[str], known_key: str
) -> None:
    from opensearch_mm import cli

    t0 = time.monotonic()
    assert cli.main(["demo"]) == 0
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert elapsed < 30

    # loud warning first, and the one-line change to the real service
    assert "local emulator at http://127.0.0.1:" in out
    assert out.index("NOT semantic") < out.index("\nLangChain\n")
    assert "export OPENSEARCH_MM_ENDPOINT=<host> OPENSEARCH_MM_API_KEY=<key>" in out
    assert "model:    ops-m2-encoder (768 dimensions)" in out
    assert "examples: 8 images with captions" in out

    for title in ("LangChain", "LlamaIndex"):
        section = _section(out, title)
        assert "indexed 8 images and 8 captions" in section
        assert "text -> image" in section and "image -> text" in section
        lists = _ranked_lists(section)
        # 2 text->image + 2 image->text queries (default --queries 2), top 3 each
        assert len(lists) == 4
        for ranked in lists:
            assert [rank for rank, _, _ in ranked] == [1, 2, 3]
            scores = [score for _, score, _ in ranked]
            assert scores == sorted(scores, reverse=True)
            assert all(-1.0 <= s <= 1.0 for s in scores)
        for ranked in lists[:2]:  # images ranked
            assert all(name.endswith((".png", ".jpg")) for _, _, name in ranked)
        for ranked in lists[2:]:  # captions ranked
            assert all(name.startswith('"') and name.endswith('"') for _, _, name in ranked)

    # both adapters send the same inputs, so they rank alike
    assert _ranked_lists(_section(out, "LangChain")) == _ranked_lists(_section(out, "LlamaIndex"))

    assert "\nWhat was sent\n" in out
    assert known_key not in out and known_key not in err
    assert "done in" in out and "self-check passed" in out


def test_an_images_own_bytes_rank_it_first_in_both_adapters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert demo.main(["--queries", "1"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (EXAMPLES / "images").iterdir())
    for title in ("LangChain", "LlamaIndex"):
        section = _section(out, title)
        checks = re.findall(r"^  (ok  |FAIL) (\S+) +-> (\S+) ([+-]\d\.\d{4})$", section, re.M)
        assert sorted(name for _, name, _, _ in checks) == names
        for status, name, top, score in checks:
            assert status == "ok  "
            assert top == name
            assert float(score) == pytest.approx(1.0, abs=1e-4)


def test_a_failed_self_check_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = EXAMPLES / "images" / "cat.png"
    original = demo.Example.data_uri

    def someone_elses_bytes(self: demo.Example) -> str:
        return (
            original(demo.Example("cat.png", other, ""))
            if self.name != "cat.png"
            else (original(self))
        )

    monkeypatch.setattr(demo.Example, "data_uri", someone_elses_bytes)
    assert demo.main(["--queries", "1", "--no-adapters"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^  FAIL red_circle\.png +-> cat\.png \+1\.0000$", out, re.M)
    assert "  ok   cat.png" in out
    assert "self-check FAILED for: core client: red_circle.png" in out


def test_what_was_sent_matches_the_emulator_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--queries", "1"]) == 0
    out = capsys.readouterr().out
    sent = out[out.index("\nWhat was sent\n") :]
    # per adapter: index (8 images + 8 captions), 1 text query, 1 image query, 8 self-checks
    assert "24 requests (HTTP 200), 52 inputs" in sent
    assert "the emulator embedded 52 inputs" in sent
    for title in ("LangChain", "LlamaIndex"):
        assert re.search(
            rf"{title}: index +2 requests, inputs per request \[8, 8\], [\d,]+ body bytes", sent
        )
        assert re.search(rf"{title}: text -> image +1 request, inputs per request \[1\]", sent)
        assert re.search(rf"{title}: image -> text +1 request, inputs per request \[1\]", sent)
        assert re.search(
            rf"{title}: image -> image +8 requests, inputs per request \[1(, 1){{7}}\]", sent
        )
    assert "POST /v3/openapi/workspaces/default/multi-modal-embedding/ops-m2-encoder" in sent
    headers = re.search(r"headers: (.*) \(Authorization", sent)
    assert headers is not None and "authorization" not in headers.group(1)
    assert "content-type" in headers.group(1)


def test_body_bytes_are_the_emulators(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Emulator] = []
    real_init = Emulator.__init__

    def spy(self: Emulator, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        seen.append(self)

    monkeypatch.setattr(Emulator, "__init__", spy)
    assert demo.main(["--queries", "1", "--no-adapters"]) == 0
    out = capsys.readouterr().out
    (emu,) = seen
    log = emu.requests_log
    total = sum(r.body_bytes for r in log)
    assert (
        f"{len(log)} requests (HTTP 200), {sum(r.n_inputs or 0 for r in log)} inputs, "
        f"{total:,} body bytes" in out
    )


def test_no_adapters_uses_the_core_client(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--no-adapters", "--queries", "3"]) == 0
    out = capsys.readouterr().out
    assert "\ncore client\n" in out
    assert "\nLangChain\n" not in out and "\nLlamaIndex\n" not in out
    assert len(_ranked_lists(_section(out, "core client"))) == 6


def test_a_missing_adapter_is_skipped_with_an_install_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_opensearch_mm", None)
    assert demo.main(["--queries", "1"]) == 0
    out = capsys.readouterr().out
    assert "langchain: skipped" in out
    assert "pip install 'opensearch-mm[langchain]'" in out
    assert "\nLlamaIndex\n" in out


def test_real_service_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A separately started emulator stands in for the real service.
    with Emulator(api_key=KNOWN_KEY) as service:
        url = service.url
        monkeypatch.setenv("OPENSEARCH_MM_ENDPOINT", url)
        monkeypatch.setenv("OPENSEARCH_MM_API_KEY", KNOWN_KEY)
        monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", "my-space")
        assert demo.main(["--queries", "1"]) == 0
        log = service.requests_log
    out, err = capsys.readouterr()
    assert f"service:  {url} (workspace my-space; API key from OPENSEARCH_MM_API_KEY)" in out
    assert "NOT semantic" not in out
    assert "per-request log is available with the local emulator only" in out
    assert KNOWN_KEY not in out and KNOWN_KEY not in err
    assert len(log) == 24
    assert {r.path for r in log} == {
        "/v3/openapi/workspaces/my-space/multi-modal-embedding/ops-m2-encoder"
    }
    assert {r.status for r in log} == {200}


def test_real_service_from_options_with_another_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Emulator(api_key=KNOWN_KEY) as service:
        code = demo.main(
            [
                "--endpoint",
                service.url,
                "--api-key",
                KNOWN_KEY,
                "--model",
                "ops-gme-qwen2-vl-2b-instruct",
                "--queries",
                "1",
                "--no-adapters",
            ]
        )
        paths = {r.path for r in service.requests_log}
    assert code == 0
    out = capsys.readouterr().out
    assert "API key from --api-key" in out
    assert "model:    ops-gme-qwen2-vl-2b-instruct (1536 dimensions)" in out
    assert paths == {
        "/v3/openapi/workspaces/default/multi-modal-embedding/ops-gme-qwen2-vl-2b-instruct"
    }
    assert KNOWN_KEY not in out


@pytest.mark.parametrize("present", ["OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_API_KEY"])
def test_half_the_credentials_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, present: str
) -> None:
    monkeypatch.setenv(present, "http://127.0.0.1:9" if "ENDPOINT" in present else KNOWN_KEY)
    assert demo.main([]) == 2
    out, err = capsys.readouterr()
    assert "OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY" in err
    assert KNOWN_KEY not in out + err


def test_a_wrong_key_is_reported_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with Emulator(api_key="the-right-key") as service:
        code = demo.main(["--endpoint", service.url, "--api-key", KNOWN_KEY, "--no-adapters"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("opensearch-mm demo: AuthenticationError")
    assert KNOWN_KEY not in err


def test_examples_directory_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pics").mkdir()
    for name in ("red_circle.png", "tree.jpg"):
        shutil.copy(EXAMPLES / "images" / name, tmp_path / "pics" / name)
    (tmp_path / "captions.jsonl").write_text(
        '{"image": "pics/red_circle.png", "caption": "red"}\n\n'
        '{"image": "pics/tree.jpg", "caption": "tree"}\n'
    )
    assert demo.main(["--examples", str(tmp_path), "--queries", "1", "--no-adapters"]) == 0
    out = capsys.readouterr().out
    assert f"examples: 2 images with captions from {tmp_path}" in out
    assert "indexed 2 images and 2 captions" in out


def test_missing_or_broken_examples_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--examples", str(tmp_path)]) == 2
    assert "no examples found" in capsys.readouterr().err
    (tmp_path / "captions.jsonl").write_text('{"image": "missing.png", "caption": "x"}\n')
    assert demo.main(["--examples", str(tmp_path)]) == 2
    assert "line 1: no file" in capsys.readouterr().err
    (tmp_path / "captions.jsonl").write_text('{"caption": "x"}\n')
    assert demo.main(["--examples", str(tmp_path)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_shipped_examples_are_small_and_match_the_captions() -> None:
    examples = demo.load_examples(demo.find_examples())
    assert len(examples) == 8
    assert len({e.caption for e in examples}) == 8
    files = list((EXAMPLES / "images").iterdir())
    assert sorted(p.name for p in files) == sorted(e.name for e in examples)
    assert sum(p.stat().st_size for p in files) < 100_000
    from PIL import Image

    for e in examples:
        with Image.open(e.path) as img:
            assert img.size == (64, 64)
            assert img.format == ("JPEG" if e.name.endswith(".jpg") else "PNG")
        assert e.data_uri().startswith(
            "data:image/jpeg;base64," if e.name.endswith(".jpg") else "data:image/png;base64,"
        )


def test_cosine_and_vector_index() -> None:
    assert demo.cosine([1.0, 0.0], [1.0, 0.0]) == pytest.approx(1.0)
    assert demo.cosine([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.0)
    assert demo.cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
    index = demo.VectorIndex()
    index.add(["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    hits = index.search([0.9, 0.1], 2)
    assert [h.name for h in hits] == ["a", "b"]
    assert hits[0].score > hits[1].score
