"""Campaign assignment: claims live in the database, no rater sees a pair twice, nothing is
lost or double-counted when many sessions vote at once."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from moa_core.store import DuplicateVoteError, add_vote, open_db
from moa_core.store.campaigns import (
    ASG,
    PAIR,
    ClaimLostError,
    claim_next,
    contender_intervals,
    create_campaign,
    progress,
    skip,
    vote,
)
from moa_core.store.models import Vote, table_of
from moa_core.store.queries import votes_df
from tests.campaign_support import seed_answers

VOTE = table_of(Vote)


def _drain(engine, cid: str, rater: str, rng: random.Random, outcome: str = "left") -> list[int]:
    pairs = []
    while (a := claim_next(engine, cid, rater, rng=rng)) is not None:
        vote(engine, a.id, rater, outcome)
        pairs.append(a.pair_id)
    return pairs


def test_a_rater_never_gets_the_same_pair_twice_and_the_target_is_met(db_url: str) -> None:
    engine = open_db(db_url)
    pairs = seed_answers(engine, questions=6, contenders=3)
    cid = create_campaign(engine, "c", pairs, target_votes=1, double_rate=0.5, repeat_rate=0.0, seed=1)
    rng = random.Random(0)
    alice = _drain(engine, cid, "alice", rng)
    bob = _drain(engine, cid, "bob", rng)
    assert len(alice) == len(set(alice)) == len(pairs)  # alice goes first and gets every pair once
    assert len(bob) == len(set(bob)) == round(0.5 * len(pairs))  # bob only the doubled ones
    assert set(bob) <= set(alice)
    p = progress(engine, cid)
    assert (p.votes, p.target, p.pairs_done, p.open_claims) == (len(alice) + len(bob), p.target, len(pairs), 0)
    assert p.votes == p.target
    assert {r.rater: r.votes for r in p.raters} == {"alice": len(alice), "bob": len(bob)}
    # The votes are ordinary votes carrying the campaign id, one per rater and pair.
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(VOTE.c.campaign_id == cid)).scalar_one() == p.votes


def test_skip_is_recorded_frees_the_slot_and_is_not_offered_again(db_url: str) -> None:
    engine = open_db(db_url)
    cid = create_campaign(engine, "c", seed_answers(engine, 1, 2), double_rate=0.0, repeat_rate=0.0)
    a = claim_next(engine, cid, "alice")
    assert a is not None
    assert claim_next(engine, cid, "bob") is None  # the only slot is alice's
    skip(engine, a.id, "alice")
    assert claim_next(engine, cid, "alice") is None
    b = claim_next(engine, cid, "bob")
    assert b is not None and b.pair_id == a.pair_id
    with pytest.raises(ClaimLostError):
        vote(engine, a.id, "alice", "left")
    assert [(r.rater, r.skips) for r in progress(engine, cid).raters] == [("alice", 1), ("bob", 0)]


def test_an_open_claim_is_resumed_and_an_expired_one_is_given_back(db_url: str) -> None:
    engine = open_db(db_url)
    cid = create_campaign(engine, "c", seed_answers(engine, 1, 2), double_rate=0.0, claim_seconds=60)
    a = claim_next(engine, cid, "alice", now=1000.0)
    assert a is not None and claim_next(engine, cid, "alice", now=1010.0) == a  # a reload resumes
    assert claim_next(engine, cid, "bob", now=1030.0) is None
    b = claim_next(engine, cid, "bob", now=1061.0)  # alice walked away: her claim expired
    assert b is not None and b.pair_id == a.pair_id
    with pytest.raises(ClaimLostError):
        vote(engine, a.id, "alice", "left")
    vote(engine, b.id, "bob", "right")
    assert progress(engine, cid).votes == 1


def test_sides_are_random_and_the_vote_is_stored_as_shown(db_url: str) -> None:
    engine = open_db(db_url)
    pairs = seed_answers(engine, 20, 2)
    cid = create_campaign(engine, "c", pairs, double_rate=0.0, repeat_rate=0.0)
    rng = random.Random(3)
    lefts = Counter()
    while (a := claim_next(engine, cid, "alice", rng=rng)) is not None:
        vid = vote(engine, a.id, "alice", "left", comment=" fine ", reason="clearer")
        lefts[a.left_contender] += 1
        with engine.connect() as conn:
            row = conn.execute(select(VOTE).where(VOTE.c.id == vid)).one()._mapping
            asg = conn.execute(select(ASG).where(ASG.c.id == a.id)).one()._mapping
        assert (row["left_generation_id"], row["outcome"]) == (a.left_generation_id, "left")
        # The assignment keeps the verdict in the pair's own order, plus comment and reason.
        assert asg["outcome"] == ("a" if a.left_contender == "model-0" else "b")
        assert (asg["comment"], asg["reason"], asg["vote_id"]) == ("fine", "clearer", vid)
    assert set(lefts) == {"model-0", "model-1"}
    # model-0 won exactly the votes where it was shown on the left.
    lo, hi = contender_intervals(engine.connect(), cid)["model-0"]
    assert lo < lefts["model-0"] / 20 < hi


def test_informative_rule_prefers_fewest_votes_then_overlapping_intervals(db_url: str) -> None:
    engine = open_db(db_url)
    pairs = seed_answers(engine, 30, 3)  # pairs (0,1) (0,2) (1,2) per question
    cid = create_campaign(engine, "c", pairs, target_votes=2, double_rate=0.0, repeat_rate=0.0)
    rng = random.Random(5)
    # Warm-up: alice rates every pair once; model-0 always wins, model-1 beats model-2 half the time.
    while (a := claim_next(engine, cid, "alice", rng=rng)) is not None:
        names = {a.left_contender, a.right_contender}
        if "model-0" in names:
            vote(engine, a.id, "alice", "left" if a.left_contender == "model-0" else "right")
        else:
            vote(engine, a.id, "alice", "tie")
    # Bob: every pair has one vote, so the most uncertain contender pair (1 vs 2) comes first.
    first = [claim_next(engine, cid, f"bob{i}", rng=rng) for i in range(5)]
    assert all(a is not None and {a.left_contender, a.right_contender} == {"model-1", "model-2"} for a in first)
    # Uniform sampling ignores the intervals.
    uni = create_campaign(engine, "u", pairs, target_votes=2, double_rate=0.0, repeat_rate=0.0, selection="uniform")
    seen = {
        frozenset((a.left_contender, a.right_contender))
        for a in (claim_next(engine, uni, f"u{i}") for i in range(30))
        if a
    }
    assert len(seen) == 3


def test_repeats_go_to_the_same_rater_and_are_not_second_votes(db_url: str) -> None:
    engine = open_db(db_url)
    cid = create_campaign(engine, "c", seed_answers(engine, 12, 2), double_rate=0.0, repeat_rate=1.0)
    rng = random.Random(1)
    shown: list[tuple[int, bool]] = []
    while (a := claim_next(engine, cid, "alice", rng=rng)) is not None:
        vote(engine, a.id, "alice", "left")
        shown.append((a.pair_id, a.is_repeat))
    firsts = [p for p, rep in shown if not rep]
    repeats = [p for p, rep in shown if rep]
    assert len(firsts) == len(set(firsts)) == 12
    assert repeats and len(repeats) == len(set(repeats)) and set(repeats) <= set(firsts)
    p = progress(engine, cid)
    assert (p.votes, p.raters[0].repeats) == (12, len(repeats))
    assert len(votes_df(engine)) == 12  # a repeat is kept on its assignment, not as a vote


def test_a_pair_voted_elsewhere_is_given_back(db_url: str) -> None:
    engine = open_db(db_url)
    pairs = seed_answers(engine, 1, 2)
    cid = create_campaign(engine, "c", pairs, double_rate=0.0)
    add_vote(engine, pairs[0].a_generation_id, pairs[0].b_generation_id, "tie", "alice")
    a = claim_next(engine, cid, "alice")
    assert a is not None
    with pytest.raises(DuplicateVoteError):
        vote(engine, a.id, "alice", "left")
    assert claim_next(engine, cid, "bob") is not None  # the slot was freed


@pytest.mark.parametrize(
    "bad", [{"target_votes": 0}, {"selection": "best"}, {"double_rate": 2.0}, {"claim_seconds": 0}]
)
def test_bad_settings_are_refused(tmp_path, bad: dict) -> None:
    engine = open_db(f"sqlite:///{tmp_path / 'moa.db'}")
    with pytest.raises(ValueError):
        create_campaign(engine, "c", seed_answers(engine, 1, 2), **bad)


def test_concurrent_raters_lose_nothing_and_never_double_claim(db_url: str) -> None:
    """Twelve raters in threads, released together, claim and vote until the campaign is
    full: every slot is used exactly once, no pair gets more votes than it needs, no rater
    votes twice on a pair, and every vote the raters were told about is stored."""
    engine = open_db(db_url)
    pairs = seed_answers(engine, 10, 3)
    cid = create_campaign(engine, "c", pairs, target_votes=2, double_rate=0.2, repeat_rate=0.05, seed=2)
    start = threading.Barrier(12)

    def rater(i: int) -> list[int]:
        rng = random.Random(i)
        start.wait()
        got = []
        while (a := claim_next(engine, cid, f"r{i}", rng=rng)) is not None:
            if rng.random() < 0.1:
                skip(engine, a.id, f"r{i}")
                continue
            vid = vote(engine, a.id, f"r{i}", rng.choice(["left", "right", "tie", "both_bad"]))
            if vid is not None:
                got.append(vid)
        return got

    with ThreadPoolExecutor(12) as pool:
        told = [v for vs in pool.map(rater, range(12)) for v in vs]
    with engine.connect() as conn:
        needed = dict(conn.execute(select(PAIR.c.id, PAIR.c.needed).where(PAIR.c.campaign_id == cid)).all())
        kept = {
            r[0]: (r[1], r[2])
            for r in conn.execute(select(PAIR.c.id, PAIR.c.votes, PAIR.c.filled).where(PAIR.c.campaign_id == cid))
        }
        voted = conn.execute(
            select(ASG.c.pair_id, ASG.c.rater, ASG.c.vote_id).where(
                ASG.c.campaign_id == cid, ASG.c.status == "voted", ASG.c.is_repeat.is_(False)
            )
        ).all()
        stored = {int(r[0]) for r in conn.execute(select(VOTE.c.id).where(VOTE.c.campaign_id == cid))}
    assert sorted(told) == sorted(stored) == sorted(int(r[2]) for r in voted)  # nothing lost, nothing extra
    per_pair = Counter(r[0] for r in voted)
    assert per_pair == Counter(needed)  # every pair got exactly the votes it needs
    assert kept == {p: (n, n) for p, n in needed.items()}  # the pairs' counters agree with the rows
    assert len({(r[0], r[1]) for r in voted}) == len(voted)  # nobody voted twice on a pair
    assert progress(engine, cid).open_claims == 0


def test_campaign_votes_name_their_campaign_in_the_vote_details(db_url: str) -> None:
    from moa_core.store.analysis_queries import vote_details

    engine = open_db(db_url)
    pairs = seed_answers(engine, 1, 3)
    cid = create_campaign(engine, "c", pairs, double_rate=0.0, repeat_rate=0.0)
    a = claim_next(engine, cid, "alice")
    assert a is not None
    vote(engine, a.id, "alice", "right")
    add_vote(engine, pairs[1].a_generation_id, pairs[1].b_generation_id, "left", "bob")
    details = vote_details(engine).set_index("rater")
    assert details.loc["alice", "campaign"] == cid
    assert details.loc["bob", "campaign"] is None
