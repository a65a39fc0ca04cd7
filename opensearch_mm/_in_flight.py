"""A cap on requests in flight, learned from the number in flight each 429 was sent with."""

from __future__ import annotations

__all__ = ["InFlightCap"]

_WINDOW_EVIDENCE = 2  # 429s above an in-flight count (one may be a rate cap's) before a cap ...
_LATE_EVIDENCE = 3  # ... (3 where answers are heard late, in batches: a coordinator's) ...
_WINDOW_ODDS = 1  # ... at least one in two sends above it refused (a rate throttle seen from
# afar refuses the bunched sends, the ones at the highest counts: a bucket at 20/s, 25 ms
# away, about two in flight, refused one in four at three, was held as a cap of two, and
# refused 8-11 % of sends for good; rare refusals are weighed below, as blurred) ...
_WINDOW_ANSWERS = 5  # ... and 5 answers per slot at or below it (a rate cap refuses at any)
_ONE_ODDS = 4  # a cap of one in flight: at least four in five sends above it refused
# A client far from the service counts requests whose answers are still on their way: sends
# above the cap are refused only now and then (one in six at 25 ms each way and 200-ms
# answers). Such a cap is learned once a rate throttle, refusing at or below it as often as
# above, would have refused 5 there and none came (odds of e**-5: under 1 %) ...
_BLUR_REFUSALS = 5
_ONE_BLUR_REFUSALS = 20  # ... 20 for a cap of one (see ``throttled``: over rate caps of 2-8/s,
# answers of 0.2-0.5 s, 2-25 ms away, 5 and 10 took some for a cap of one, 20 none)
_BLUR_RACE_ANSWERS = 50  # ... and excuses a 429 at a count that held once per 50 answers at
# most, as often as it tries one more, one at a time (a client's counts blur into the cap's:
# over caps of 2-16, answers of 0.1-0.4 s, 10-50 ms each way: at 35, up to 3.7 % refused)
_WINDOW_PROBE_ANSWERS = 50  # answers before one more in flight is tried (<= 2 % 429s)
# A 429 at a count that held is excused as a race (see ``throttled``) at most once per 10
# answers: refused more often, K in flight carry less than K - 1 would at caps up to 10 ...
_RACE_ANSWERS = 10
_RACE_SAVED = 5  # ... saved up for 5 (a service busy for a while frees late)
# A first candidate above every count answered, where the sender can tell which sends are
# still in flight (a process's own limiter): fewer answers at or below it are enough ...
_FIRST_ANSWERS = 1  # ... one per slot, for requests sent since it was set (a new turn) ...
_FIRST_ODDS = 1  # ... while at least half the sends above it (answered or not yet) were refused
_TEST_ANSWERS = 3  # tested for two answer times (at its own rate a count above it comes in one)
_ONE_RACE_ANSWERS = 50  # a cap of one excuses a race only once it has carried 50 answers:
# a rate throttle taken for one refuses at one within a few, a race comes about once in 150


class InFlightCap:
    """Learns a concurrency cap: 429s that come only above some number in flight.

    ``limit`` is one less than the fewest in flight seen with a 429. It becomes ``active``
    once requests sent above it were refused at least as often as answered, while many at
    or below it were answered (a rate throttle refuses requests whatever the number in
    flight, so answers above the limit keep it off), or, where refusals above it are rare
    (a client far from the service counts answers still on their way), once so many were
    answered at or below it that a rate throttle would have refused some there too (a cap
    learned so tries one more at a time, and excuses fewer races). A first candidate, set
    by a 429 above every count answered so far, needs less where the caller says which
    requests are still in flight (``unanswered``): one answer per slot for requests sent
    since it was set, and at least as many sends above it refused as answered or still in
    flight (a ramp's burst of 429s, at counts that rise only because nothing has come
    back yet, is followed by answers at those counts). Until then it is ``testing``:
    worth sending at the rate its slots carry, so that a count above it comes soon and
    either confirms it or shows a rate cap. While active, after enough answers without a
    429 it allows one more, then two, four... more (a raised cap is found quickly: after
    a step that held, the next comes once the slots it added have carried five answers
    each); a 429 at ``n`` in flight within the limit puts it at ``n - 1`` (the probe
    failed, or the cap moved down); one with nothing else in flight means it was never a
    concurrency cap (unless the cap is one and has carried 50 answers: a race, below). A
    lone 429 at a count that held, answered again at that count before the next one, is a
    send that raced a slot not yet freed: excused, at most once per 10 answers (50 for a
    cap learned from rare refusals). A 429 at a count that held, not excused, under a cap
    learned from sharp refusals (more sends above it refused than answered), while the
    account accepted well under what the cap's slots carry (the caller says: ``paced``),
    is a rate throttle refusing within the cap: the cap stays, ``rated``, and every 429
    within it from then on is a rate signal, but two at or above a count, the second sent
    after the first cut the rate, none answered there between, put the cap below that
    count; it tries one more in flight only once its slots have been full (``alone``:
    whether the cap holds the sends back alone).
    """

    FIELDS = (
        "limit",
        "active",
        "_over_ok",
        "_over_bad",
        "_under_ok",
        "_since",
        "_step",
        "_held",
        "_top",
        "_first",
        "_fresh_ok",
        "_clean",
        "_doubt",
        "_blurred",
        "rated",
        "_carried",
    )

    def __init__(self, *, prompt: bool = False) -> None:
        # prompt: answers are heard as they come (this process's own). Where they are
        # reported late and in batches (a coordinator's), counts blur and a step would
        # look held too early: more evidence, and no quick steps up.
        self.prompt = prompt
        self._evidence = _WINDOW_EVIDENCE if prompt else _LATE_EVIDENCE
        self.limit = 0
        self.active = False
        self._over_ok = 0
        self._over_bad = 0
        self._under_ok = 0
        self._since = 0  # answers since the last change of the limit
        self._step = 1
        self._held = 0  # the last limit that held (before the latest probe)
        self._top = 0  # the most in flight any answered request was sent with
        self._first = False  # the limit is a first candidate, above every count answered
        self._fresh_ok = 0  # answers at or below it for requests sent since it was set
        self._clean = 0  # answers saved up to excuse 429s at a count that held
        self._doubt = 0  # that count, until an answer to a send at or above it comes
        self._blurred = False  # learned from 429s above it that come only now and then
        self.rated = False  # a rate throttle refuses too, within the cap
        self._carried = 0  # answers since the cap was learned (up to _ONE_RACE_ANSWERS)

    @property
    def alone(self) -> bool:
        """A cap is learned and nothing else refuses within it: the cap, not a rate,
        holds the sends back."""
        return self.active and not self.rated

    @property
    def testing(self) -> bool:
        """A first candidate not yet confirmed, its slots answered once each since it was
        set: only a count above it tells a concurrency cap (refused) from a rate cap
        (answered, or refusing at lower counts too). (Not before those answers: a rate
        cap still shut after the 429 refuses the next sends at lower counts first, and the
        candidate goes before anything is sent to test it.)"""
        return (
            self._first
            and not self.active
            and self.limit >= 2
            and self.limit <= self._fresh_ok < _TEST_ANSWERS * self.limit
        )

    def _candidate(self, limit: int) -> None:
        self.limit, self.active, self._first, self._blurred = limit, False, False, False
        self.rated = False
        self._over_ok, self._over_bad, self._under_ok, self._fresh_ok = 0, 1, 0, 0

    def ok(self, n: int, fresh: bool = True) -> None:
        """Record an answer to a request sent with ``n`` in flight (``fresh``: sent since
        the limit last changed)."""
        self._top = max(self._top, n)
        if not self.limit or not n:
            return
        if n >= self._doubt:
            self._doubt = 0
        if not self.active:
            if n > self.limit:
                self._over_ok += 1
            else:
                self._under_ok += 1
                self._fresh_ok += fresh
            return
        self._carried = min(self._carried + 1, _ONE_RACE_ANSWERS)
        if not self.rated or n >= self.limit:
            # (Under a rate throttle too, the pace can keep the count below the cap for
            # good: one more is tried only once the slots have been full, or the cap
            # climbs without evidence and stops holding anything back.)
            self._since += 1
        self._clean = min(self._clean + 1, _RACE_SAVED * self._race_answers)
        # After a probe that held, the next needs only the answers that show the slots it
        # added carry requests (a failed probe costs the 429s, not one that held): a
        # raised cap is found in a few answer times, not 50 answers per step. (Not where
        # counts blur: there a probe holds by luck as often as not.)
        wait = _WINDOW_PROBE_ANSWERS
        if self.prompt and self._step > 1:
            wait = _WINDOW_ANSWERS * (self._step // 2)
        if self._since >= wait:
            self._held = self.limit
            self.limit += self._step
            self._step = 1 if self._blurred else 2 * self._step
            self._since = 0

    @property
    def _race_answers(self) -> int:
        return _BLUR_RACE_ANSWERS if self._blurred else _RACE_ANSWERS

    def throttled(
        self,
        n: int,
        unanswered: list[int] | None = None,
        *,
        paced: bool = False,
        fresh: bool = True,
    ) -> bool:
        """Record a 429 sent with ``n`` in flight; ``True`` if a concurrency cap explains it.

        ``unanswered``: the counts the requests still in flight were sent with (those sent
        long enough ago that a 429 would have come), when the caller knows them.
        ``paced``: the account has been accepting well under what the cap's slots carry
        (something else holds the sends back: a rate throttle, if it refuses within the cap).
        ``fresh``: the request was sent since the last cut of the rate.
        """
        if self.active:
            if n > self.limit:
                return True  # a send that raced a freed slot
            if n > self._held:
                # A slot just probed was refused: the cap is below n. (Until the new limit
                # holds, 429s from the same probe, at any count above the last limit that
                # held, lower it further: they come back in any order.)
                self.limit, self._step, self._since = min(self.limit, n - 1), 1, 0
                return True
            if self.rated and n > 1:
                if fresh and self._doubt and n >= self._doubt:
                    # Refused again at or above a count refused before, sent since that
                    # 429 cut the rate, none answered there between: the cap moved down.
                    self.limit = self._held = min(self.limit, self._doubt - 1)
                    self._step, self._since, self._doubt = 1, 0, 0
                    return True
                if fresh:
                    self._doubt = min(self._doubt, n) if self._doubt else n
                return False  # a rate throttle's, within the cap (races are read so too)
            raced = n > 1 or (
                self._held == 1 and not self.rated and self._carried >= _ONE_RACE_ANSWERS
            )
            if self.prompt and raced and not self._doubt and self._clean >= self._race_answers:
                # Refused at a count that held: a send that raced a slot the service frees
                # only once the answer is on its way (the client can have it first), if
                # the next send at this count is answered. A cap that moved down refuses
                # every send above it: the next 429 comes first. (Where answers are heard
                # late, in batches, the caller weighs such 429s over time itself.) With
                # nothing else in flight only under a cap of one, where the slot raced is
                # the only one, no rate throttle refusing within it, and once the cap has
                # carried 50 answers (a rate throttle taken for a cap of one refuses at one
                # within a few): read as no cap at all, a cap of one at 40 ms was dropped
                # every few seconds, a burst refused, and held 0.70-0.73 of the ceiling,
                # where one request at a time holds 0.83.
                self._clean, self._doubt = self._clean - self._race_answers, n
                return True
            sharp = not self._blurred and self._over_ok < self._over_bad
            if self.prompt and n > 1 and paced and sharp:
                # Refused at a count that held, under a cap learned from sharp refusals, the
                # account accepting well under what its slots carry: a rate throttle
                # refuses within it too (a gateway with both limits). The cap stays and
                # the rate is paced as well. (Read as a cap that moved down, a cap of 3
                # under a 20/s window was learned again down to 1, and the pair was paced
                # as a rate: 0.87 of it, 0.96 knowing the cap. Not a cap learned from
                # refusals among answers above it: a rate throttle taken for one goes.)
                self.rated = True
                return False
            # Refused at a count that was answered before, again (or with nothing else in
            # flight): the cap moved down, or it was never a concurrency cap (with a
            # steady answer time, a rate cap also refuses at high counts). Learn again.
            self._doubt = 0
            self._candidate(n - 1)
            return False
        if not self.limit or n - 1 < self.limit:
            first = not self.limit and n > self._top
            self._candidate(n - 1)
            self._first = first and unanswered is not None
            return False
        if n > self.limit:
            self._over_bad += 1
        over_ok, odds = self._over_ok, _WINDOW_ODDS
        under_ok, answers = self._under_ok, _WINDOW_ANSWERS
        if self._first and unanswered is not None:
            over_ok += sum(1 for m in unanswered if m > self.limit)
            odds, under_ok, answers = _FIRST_ODDS, self._fresh_ok, _FIRST_ANSWERS
        if (
            self.limit < (1 if self.prompt else 2)  # one at a time: see below
            or self._over_bad < self._evidence
            or under_ok < answers * self.limit
        ):
            return False
        sharp = over_ok <= odds * self._over_bad
        # (No 429 at or below the limit since it was set: any would have lowered it. Not
        # where answers are heard late, in batches: there counts blur for that reason too,
        # refusals above a count can be rare under a rate cap, and a cap read too high
        # lets sends through that the service refuses.)
        expected = self._under_ok * self._over_bad / (self._over_ok + self._over_bad)
        blur_refusals = _BLUR_REFUSALS
        if self.limit == 1 and _ONE_ODDS * over_ok > self._over_bad:
            # One in flight at a time (an account that takes requests one by one) where
            # nearly every send above it was refused, or on four times the evidence of
            # rare refusals: a rate throttle whose answers take about its send interval
            # also sends at one or two in flight, and refuses the bunched sends, the ones
            # at two; a run of its refusals at two (none at one) is no rarity. (Paced as
            # a rate instead, such a cap held 0.52-0.60 of what one request at a time
            # carries, the naive loop 0.93-1.0; seen from 25 ms away, 0.57 against 0.81.)
            sharp, blur_refusals = False, _ONE_BLUR_REFUSALS
        if not sharp and (not self.prompt or expected < blur_refusals):
            return False
        self.active, self._step, self._since, self._held = True, 1, 0, self.limit
        self._carried = 0
        self._blurred = not sharp
        self._clean = _RACE_SAVED * self._race_answers  # (not yet refused at a count that held)
        return True
