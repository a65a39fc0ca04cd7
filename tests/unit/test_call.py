"""The bookkeeping of one multi-request call (``opensearch_mm._call.CallState``)."""

from __future__ import annotations

import orjson
import pytest

from opensearch_mm._call import CallState
from opensearch_mm._cli_errors import core_message
from opensearch_mm.batching import Batch, pack
from opensearch_mm.errors import (
    APIResponseError,
    AuthenticationError,
    InternalServerError,
    OpenSearchMMError,
)
from opensearch_mm.inputs import WireItem
from opensearch_mm.protocol import BatchResponse
from opensearch_mm.results import EmbeddingResult, Usage


def batches(n: int, size: int) -> list[Batch]:
    items = [WireItem(i, orjson.dumps({"text": f"t{i}"}), False) for i in range(n)]
    return list(pack(items, max_inputs=size))


def ok(batch: Batch, dim: int = 3, rid: str | None = None) -> BatchResponse:
    vectors = [[float(i)] * dim for i in batch.indices]
    return BatchResponse(
        vectors, Usage(token_count=len(batch), image=1), rid or f"rid-{batch.indices[0]}"
    )


def server_error(tag: str = "x") -> InternalServerError:
    return InternalServerError(tag, status_code=500, code="InternalServerError")


def test_all_ok_in_any_completion_order() -> None:
    bs = batches(10, 3)
    state = CallState(10, model="m", dimensions=3)
    for b in reversed(bs):
        state.record(b, ok(b))
    result = state.finish()
    assert isinstance(result, EmbeddingResult)
    assert [v[0] for v in result.embeddings] == [float(i) for i in range(10)]
    assert result.usage == Usage(token_count=10, image=4)
    assert sorted(result.request_ids) == ["rid-0", "rid-3", "rid-6", "rid-9"]
    assert result.model == "m"
    assert len(result) == 10


def test_zero_inputs() -> None:
    result = CallState(0, model="m", dimensions=None).finish()
    assert result.embeddings == [] and result.usage == Usage()


def test_partial_result_on_failure() -> None:
    bs = batches(10, 4)  # [0-3], [4-7], [8-9]
    state = CallState(10, model="m", dimensions=3)
    err = server_error()
    state.record(bs[0], ok(bs[0]))
    state.record(bs[1], err)
    state.record(bs[2], ok(bs[2]))
    with pytest.raises(InternalServerError) as ei:
        state.finish()
    assert ei.value is err
    partial = ei.value.partial
    assert partial is not None
    assert partial.failed_indices == [4, 5, 6, 7]
    assert partial.succeeded_indices == [0, 1, 2, 3, 8, 9]
    assert partial.embeddings[4] is None and partial.embeddings[9] == [9.0, 9.0, 9.0]
    assert partial.errors == {4: err, 5: err, 6: err, 7: err}
    assert partial.usage == Usage(token_count=6, image=2)
    assert partial.request_ids == ["rid-0", "rid-8"]


def test_the_summary_appended_to_the_message_can_be_taken_off_exactly() -> None:
    """The service's own message may end in brackets: only the appended summary goes."""
    bs = batches(4, 2)
    state = CallState(4, model="m", dimensions=3)
    err = server_error("busy [try later]")
    state.record(bs[0], ok(bs[0]))
    state.record(bs[1], err)
    with pytest.raises(InternalServerError) as ei:
        state.finish()
    summary = ei.value.partial_summary
    assert summary is not None and summary.startswith("2 of 4 inputs embedded")
    assert str(ei.value).endswith(f"busy [try later] [{summary}]")
    assert core_message(ei.value).endswith("busy [try later]")
    assert core_message(server_error("plain [x]")).endswith("plain [x]")


def test_first_error_by_input_position_not_arrival() -> None:
    bs = batches(9, 3)
    state = CallState(9, model="m", dimensions=3)
    late, early = server_error("late"), server_error("early")
    state.record(bs[2], late)  # arrives first but is later in the input
    state.record(bs[0], early)
    state.record(bs[1], ok(bs[1]))
    with pytest.raises(InternalServerError) as ei:
        state.finish()
    assert ei.value is early
    assert ei.value.partial is not None
    assert ei.value.partial.failed_indices == [0, 1, 2, 6, 7, 8]
    assert ei.value.partial.errors[7] is late


def test_fatal_error_stops_the_call() -> None:
    bs = batches(6, 2)
    state = CallState(6, model="m", dimensions=3)
    state.record(bs[0], server_error())
    assert not state.stopped
    state.record(bs[1], AuthenticationError("no", status_code=401))
    assert state.stopped
    # the third batch was never sent: it has no error of its own
    with pytest.raises(OpenSearchMMError) as ei:
        state.finish()
    partial = ei.value.partial
    assert partial is not None
    assert partial.failed_indices == [0, 1, 2, 3, 4, 5]
    assert partial.errors[4] is None and partial.errors[5] is None


def test_dimensions_learned_then_checked_across_batches() -> None:
    bs = batches(6, 2)
    state = CallState(6, model="custom", dimensions=None)
    state.record(bs[0], ok(bs[0], dim=5))
    assert state.dimensions == 5
    state.record(bs[1], ok(bs[1], dim=7))
    state.record(bs[2], ok(bs[2], dim=5))
    with pytest.raises(APIResponseError, match="7 numbers") as ei:
        state.finish()
    assert ei.value.request_id == "rid-2"
    partial = ei.value.partial
    assert partial is not None
    assert partial.failed_indices == [2, 3]
    # the mismatching batch contributed nothing
    assert partial.usage == Usage(token_count=4, image=2)
    assert partial.request_ids == ["rid-0", "rid-4"]


def test_known_dimensions_checked() -> None:
    (b,) = batches(2, 2)
    state = CallState(2, model="m", dimensions=768)
    state.record(b, ok(b, dim=3))
    with pytest.raises(APIResponseError):
        state.finish()


def test_missing_request_id_not_collected() -> None:
    (b,) = batches(1, 1)
    state = CallState(1, model="m", dimensions=3)
    state.record(b, BatchResponse([[1.0, 2.0, 3.0]], Usage(), None))
    assert state.finish().request_ids == []


def test_non_library_error_is_raised_as_is() -> None:
    (b,) = batches(1, 1)
    state = CallState(1, model="m", dimensions=3)
    boom = RuntimeError("boom")
    state.record(b, boom)
    with pytest.raises(RuntimeError) as ei:
        state.finish()
    assert ei.value is boom


def test_record_says_how_many_inputs_an_outcome_embedded_repeats_included() -> None:
    """What ``on_progress`` is told: a batch's inputs plus the repeats copied from them,
    nothing for a failure or a batch never sent; the total is every input on success."""
    from opensearch_mm._call import NOT_SENT

    bs = batches(6, 3)  # [0-2], [3-5]; inputs 6 and 7 repeat 1, input 8 repeats 4
    state = CallState(9, model="m", dimensions=3, copies={6: 1, 7: 1, 8: 4})
    assert state.record(bs[0], ok(bs[0])) == 3 + 2
    assert state.record(bs[1], server_error()) == 0
    assert state.record(bs[1], NOT_SENT) == 0
    whole = CallState(9, model="m", dimensions=3, copies={6: 1, 7: 1, 8: 4})
    assert sum(whole.record(b, ok(b)) for b in bs) == 9


def test_a_request_refused_as_invalid_names_the_inputs_it_held() -> None:
    """The service names an input by its place in the request: the message says which
    inputs of the call that request held, in order (sent once for their repeats)."""
    from opensearch_mm._call import StreamState
    from opensearch_mm.errors import InvalidParameterError

    items = [WireItem(i, orjson.dumps({"text": f"t{i}"}), False) for i in (0, 1, 2, 5, 6, 9)]
    held = Batch(tuple(items))
    for state in (CallState(10, model="m", dimensions=3), StreamState(dimensions=3)):
        err = InvalidParameterError("input[3].image: bad", status_code=400, code="X")
        if isinstance(state, CallState):
            state.record(held, err)
        else:
            state.accept(held, err)
        with pytest.raises(InvalidParameterError) as ei:
            state.finish()
        assert "the refused request held inputs 0-2, 5-6, 9 (in that order" in str(ei.value)
    other = CallState(4, model="m", dimensions=3)
    for b in batches(4, 2):
        other.record(b, server_error())
    with pytest.raises(InternalServerError) as si:
        other.finish()
    assert "refused request" not in str(si.value)


def test_a_wrong_answer_names_its_input_in_the_call() -> None:
    items = [WireItem(i, orjson.dumps({"text": f"t{i}"}), False) for i in (32, 33, 40)]
    state = CallState(41, model="m", dimensions=3)
    state.record(Batch(tuple(items)), APIResponseError("holds a non-number", position=2))
    with pytest.raises(APIResponseError) as ei:
        state.finish()
    assert "request position 2 is input 40" in str(ei.value)


def test_a_split_batch_records_each_part() -> None:
    """A batch refused as invalid and sent again in halves: the good half's vectors land,
    the bad one fails alone, named by the inputs it held."""
    from opensearch_mm._call import Split, StreamState
    from opensearch_mm.errors import InvalidParameterError

    [whole] = batches(4, 4)
    good, bad = whole.halves()
    err = InvalidParameterError("input[1].image: cannot download", status_code=400)
    split = Split(((good, ok(good)), (bad, err)))
    state = CallState(4, model="m", dimensions=3)
    assert state.record(whole, split) == 2
    with pytest.raises(InvalidParameterError) as ei:
        state.finish()
    assert ei.value.partial is not None and ei.value.partial.failed_indices == [2, 3]
    assert "the refused request held inputs 2-3" in str(ei.value)
    stream = StreamState(dimensions=3)
    assert stream.accept(whole, split) == ok(good).embeddings  # (the part before the bad)
    with pytest.raises(InvalidParameterError) as si:
        stream.finish()
    assert si.value.partial is not None and si.value.partial.offset == 2


def run_halving(bad: set[int], n: int = 32) -> tuple[list[int], int]:
    """Halve a refused batch of ``n`` against a service refusing any request holding an
    input of ``bad``: (the inputs that end refused, sub-requests sent)."""
    from opensearch_mm._call import halving
    from opensearch_mm.errors import InvalidParameterError

    [whole] = batches(n, n)
    plan, sent = halving(whole), 0
    try:
        part = next(plan)
        while True:
            sent += 1
            refused = bad & set(part.indices)
            outcome = InvalidParameterError("x", status_code=400) if refused else ok(part)
            part = plan.send(outcome)
    except StopIteration as done:
        split = done.value
    state = CallState(n, model="m", dimensions=3)
    state.record(whole, split)
    with pytest.raises(InvalidParameterError) as ei:
        state.finish()
    assert ei.value.partial is not None
    return ei.value.partial.failed_indices, sent


@pytest.mark.parametrize(
    ("bad", "sent"),
    [({5}, 10), ({3, 17}, 18), ({2, 12, 20}, 24), ({0, 8, 16, 24}, 30), ({0, 31}, 18)],
)
def test_halving_leaves_each_bad_input_alone(bad: set[int], sent: int) -> None:
    assert run_halving(bad) == (sorted(bad), sent)


def test_halving_a_request_refused_whatever_it_holds_stops_after_three_levels() -> None:
    failed, sent = run_halving(set(range(32)))
    assert failed == list(range(32)) and sent == 2 + 4 + 8
    failed, sent = run_halving({k * 4 for k in range(8)})  # a bad input in every eighth
    assert sent == 14 and len(failed) == 32  # (the limit: eighths all refused)
