"""Packing wire items into requests (``opensearch_mm.batching``)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from opensearch_mm.batching import (
    BODY_OVERHEAD,
    MAX_BODY_BYTES,
    MAX_INPUTS_PER_REQUEST,
    Packer,
    body_size,
    pack,
)
from opensearch_mm.inputs import WireItem


def text_item(index: int, text: str | None = None) -> WireItem:
    return WireItem(index, orjson.dumps({"text": text or f"t{index}"}), False)


def sized_item(index: int, size: int) -> WireItem:
    """An item whose encoding is exactly ``size`` bytes."""
    pad = size - len(orjson.dumps({"text": ""}))
    item = WireItem(index, orjson.dumps({"text": "x" * pad}), False)
    assert item.size == size
    return item


def test_constants() -> None:
    assert MAX_INPUTS_PER_REQUEST == 32
    assert MAX_BODY_BYTES <= 8 * 1000 * 1000
    assert len(b'{"input":[]}') == BODY_OVERHEAD


@pytest.mark.parametrize(
    ("n", "sizes"),
    [(0, []), (1, [1]), (32, [32]), (33, [32, 1]), (64, [32, 32]), (100, [32, 32, 32, 4])],
)
def test_32_input_limit(n: int, sizes: list[int]) -> None:
    batches = list(pack(text_item(i) for i in range(n)))
    assert [len(b) for b in batches] == sizes


def test_order_preserved_and_every_item_once() -> None:
    items = [text_item(i) for i in range(77)]
    batches = list(pack(items, max_inputs=10))
    flat = [idx for b in batches for idx in b.indices]
    assert flat == list(range(77))
    assert all(len(b) <= 10 for b in batches)


def test_body_is_valid_json_equal_to_items() -> None:
    texts = ["a", 'ü "q"', "猫", "\\"]
    items = [text_item(i, t) for i, t in enumerate(texts)]
    (batch,) = pack(items)
    body = batch.body()
    assert body.startswith(b'{"input":[') and body.endswith(b"]}")
    assert orjson.loads(body) == {"input": [{"text": t} for t in texts]}
    assert len(body) == body_size(items)


def test_body_size_of_empty_and_one() -> None:
    assert body_size([]) == BODY_OVERHEAD
    item = text_item(0)
    assert body_size([item]) == BODY_OVERHEAD + item.size
    assert body_size([item, item]) == BODY_OVERHEAD + 2 * item.size + 1


def test_body_limit_splits_big_items() -> None:
    limit = 1000
    items = [sized_item(i, 300) for i in range(7)]
    batches = list(pack(items, max_body_bytes=limit))
    for b in batches:
        assert len(b.body()) <= limit
    # 3 items: 12 + 900 + 2 = 914 fits; a 4th would need 1215
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [i for b in batches for i in b.indices] == list(range(7))


def test_body_limit_exact_fit() -> None:
    a, b = sized_item(0, 100), sized_item(1, 100)
    limit = BODY_OVERHEAD + 201
    assert [len(x) for x in pack([a, b], max_body_bytes=limit)] == [2]
    assert [len(x) for x in pack([a, b], max_body_bytes=limit - 1)] == [1, 1]


def test_realistic_8mb_limit_with_3mb_items() -> None:
    items = [sized_item(i, 3_000_000) for i in range(5)]
    batches = list(pack(items))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert all(len(b.body()) <= MAX_BODY_BYTES for b in batches)


def test_mixed_small_and_big_keep_order() -> None:
    items = [
        sized_item(0, 50),
        sized_item(1, 600),
        sized_item(2, 50),
        sized_item(3, 600),
        sized_item(4, 50),
    ]
    batches = list(pack(items, max_body_bytes=800))
    assert [b.indices for b in batches] == [[0, 1, 2], [3, 4]]


def test_item_that_can_never_fit_raises() -> None:
    with pytest.raises(ValueError, match="cannot fit"):
        list(pack([sized_item(0, 1000)], max_body_bytes=500))


def test_pack_is_lazy() -> None:
    consumed: list[int] = []

    def gen() -> Iterator[WireItem]:
        for i in range(1000):
            consumed.append(i)
            yield text_item(i)

    it = pack(gen())
    first = next(it)
    assert first.indices == list(range(32))
    # the 33rd item closed the first batch; nothing beyond was pulled
    assert len(consumed) == 33


def test_pack_on_infinite_stream() -> None:
    def forever() -> Iterator[WireItem]:
        i = 0
        while True:
            yield text_item(i)
            i += 1

    it = pack(forever(), max_inputs=5)
    assert [next(it).indices for _ in range(3)] == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
        [10, 11, 12, 13, 14],
    ]


def test_packer_incremental() -> None:
    packer = Packer(max_inputs=2)
    assert packer.flush() is None
    assert packer.add(text_item(0)) is None
    assert packer.add(text_item(1)) is None
    closed = packer.add(text_item(2))
    assert closed is not None and closed.indices == [0, 1]
    last = packer.flush()
    assert last is not None and last.indices == [2]
    assert packer.flush() is None
    # the packer is reusable after a flush, with a fresh size budget
    assert packer.add(text_item(3)) is None
    again = packer.flush()
    assert again is not None and again.indices == [3]


def test_packer_size_resets_after_close() -> None:
    packer = Packer(max_body_bytes=BODY_OVERHEAD + 100)
    assert packer.add(sized_item(0, 100)) is None
    closed = packer.add(sized_item(1, 100))
    assert closed is not None and closed.indices == [0]
    closed = packer.add(sized_item(2, 100))
    assert closed is not None and closed.indices == [1]


@pytest.mark.parametrize("bad", [0, -1, 33])
def test_packer_rejects_bad_max_inputs(bad: int) -> None:
    with pytest.raises(ValueError):
        Packer(max_inputs=bad)
