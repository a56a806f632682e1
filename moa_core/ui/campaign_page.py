"""Campaign page: `/Campaign?c=<id>` gives a rater blind pairs one after another.

The pair a rater is working on is a claim row in the database (store.campaigns), so a
reload, a second tab or a second rater never loses or duplicates it; the session only
remembers what was just voted, to reveal the names.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy.engine import Engine

from moa_core.arena import CHOICE_LABELS, CHOICES, SIDES
from moa_core.evaluation.campaign import campaign_from_evaluation
from moa_core.evaluation.records import list_evaluations
from moa_core.store.campaigns import (
    REASON_TAGS,
    CampaignInfo,
    ClaimLostError,
    claim_next,
    get_campaign,
    list_campaigns,
    pair_texts,
    progress,
    skip,
    vote,
)
from moa_core.store.db import StoreError
from moa_core.store.ratings import DuplicateVoteError
from moa_core.ui.layout import rater_name, store
from moa_core.ui.safe_text import code_span, md_escape, safe_markdown

PARAM = "c"
REVEALED = "campaign_revealed"
NOTICE = "campaign_notice"


def _progress(engine: Engine, camp: CampaignInfo, rater: str) -> None:
    p = progress(engine, camp.id)
    st.progress(p.fraction, text=f"Campaign: {p.votes} of {p.target} votes")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Pairs complete", f"{p.pairs_done} / {p.pairs}")
    c2.metric("Being rated now", p.open_claims)
    c3.metric("Contender pairs still uncertain", p.uncertain_pairs, help="Their win-rate intervals overlap")
    mine = next((r for r in p.raters if r.rater == rater), None)
    c4.metric("Your votes", mine.votes if mine else 0)
    if p.raters:
        table = pd.DataFrame(
            [{"rater": r.rater, "votes": r.votes, "skips": r.skips, "repeats": r.repeats} for r in p.raters]
        )
        with st.expander(f"Raters ({len(p.raters)})"):
            st.dataframe(table, hide_index=True, key="campaign_raters")


def _reveal(engine: Engine, shown: dict[str, Any]) -> None:
    st.markdown("##### Question")
    st.markdown(safe_markdown(shown["question"]))
    for side, col in zip(SIDES, st.columns(2, border=True), strict=False):
        with col:
            st.markdown(f"#### {side} · {code_span(shown['names'][side])}")
            st.markdown(safe_markdown(shown["texts"][side]))
    kind = "Repeat answer saved" if shown["repeat"] else "Vote saved"
    st.success(
        f"{kind}: **{CHOICE_LABELS[shown['choice']]}**. "
        f"A was {code_span(shown['names']['A'])}, B was {code_span(shown['names']['B'])}."
    )
    if st.button("Next pair", key="campaign_next", type="primary", icon=":material/skip_next:"):
        st.session_state.pop(REVEALED, None)
        st.rerun()


def _rate(engine: Engine, camp: CampaignInfo, rater: str) -> None:
    shown = st.session_state.get(REVEALED)
    if shown is not None and shown["campaign"] == camp.id and shown["rater"] == rater:
        _reveal(engine, shown)
        return
    notice = st.session_state.pop(NOTICE, None)
    if notice:
        st.warning(md_escape(notice))
    try:
        asg = claim_next(engine, camp.id, rater)
    except (StoreError, ValueError) as err:
        st.error(f"No pair could be claimed: {md_escape(str(err))}")
        return
    if asg is None:
        st.info("Nothing left for you to rate in this campaign. Thank you!")
        return
    question, left, right = pair_texts(engine, asg)
    texts = {"A": left, "B": right}
    st.markdown("##### Question")
    st.markdown(safe_markdown(question))
    for side, col in zip(SIDES, st.columns(2, border=True), strict=False):
        with col:
            st.markdown(f"#### {side}")
            with st.container(key=f"campaign_answer_{side}"):
                st.markdown(safe_markdown(texts[side]))
    with st.form(key=f"campaign_form_{asg.id}", border=False):
        comment = st.text_input("Comment (optional)", max_chars=2000, key=f"campaign_comment_{asg.id}")
        reason = st.selectbox(
            "Main reason (optional)", REASON_TAGS, index=None, placeholder="—", key=f"campaign_reason_{asg.id}"
        )
        clicked = None
        cols = st.columns(5)
        for col, (choice, label) in zip(cols, CHOICE_LABELS.items(), strict=False):
            if col.form_submit_button(label, key=f"campaign_vote_{choice}", width="stretch"):
                clicked = choice
        skipped = cols[4].form_submit_button("Skip", key="campaign_skip", width="stretch", icon=":material/redo:")
    if skipped:
        try:
            skip(engine, asg.id, rater)
        except (StoreError, ValueError) as err:
            st.session_state[NOTICE] = f"The skip could not be saved: {err}"
        st.rerun()
    if clicked is None:
        return
    try:
        vote(engine, asg.id, rater, CHOICES[clicked], comment, reason)
    except DuplicateVoteError:
        st.session_state[NOTICE] = "You had already voted on these two answers elsewhere: that vote counts."
        st.rerun()
    except (ClaimLostError, StoreError, ValueError) as err:
        st.session_state[NOTICE] = f"The vote could not be saved: {err}"
        st.rerun()
    st.session_state[REVEALED] = {
        "campaign": camp.id,
        "rater": rater,
        "choice": clicked,
        "repeat": asg.is_repeat,
        "question": question,
        "texts": texts,
        "names": {"A": asg.left_contender, "B": asg.right_contender},
    }
    st.rerun()


def _create_form(engine: Engine) -> None:
    evals = list_evaluations(engine)
    with st.expander("New campaign from an evaluation's answers", expanded=not list_campaigns(engine)):
        if evals.empty:
            st.info("Run an evaluation first (Evaluate page or `moa eval`): its answers are what raters compare.")
            return
        with st.form("campaign_new"):
            source = st.selectbox("Evaluation", list(evals["name"]), key="campaign_new_eval")
            name = st.text_input("Campaign name", max_chars=120, key="campaign_new_name")
            target = st.number_input("Votes per pair", 1, 20, 1, key="campaign_new_target")
            uniform = st.toggle("Plain uniform sampling (instead of the most informative pair next)", False)
            instructions = st.text_area("Instructions for raters (optional)", max_chars=4000)
            if not st.form_submit_button("Create campaign", type="primary"):
                return
        try:
            cid = campaign_from_evaluation(
                engine,
                source,
                name.strip() or source,
                target_votes=int(target),
                selection="uniform" if uniform else "informative",
                instructions=instructions,
            )
        except (StoreError, ValueError) as err:
            st.error(md_escape(str(err)))
            return
        st.query_params[PARAM] = cid
        st.rerun()


def _overview(engine: Engine) -> None:
    st.title("Rating campaigns")
    _create_form(engine)
    for camp in list_campaigns(engine):
        p = progress(engine, camp.id)
        st.markdown(
            f"[{md_escape(camp.name, 120)}](/Campaign?{PARAM}={camp.id}) · {code_span(camp.id)} · "
            f"{p.votes} of {p.target} votes · {camp.selection}"
        )


def campaign_page() -> None:
    engine = store()
    cid = st.query_params.get(PARAM)
    if not cid:
        _overview(engine)
        return
    camp = get_campaign(engine, cid)
    if camp is None:
        st.error(f"No campaign with id {md_escape(repr(cid), 80)}.")
        return
    st.title(md_escape(camp.name, 200))
    if camp.instructions:
        st.info(safe_markdown(camp.instructions))
    rater = rater_name()
    st.fragment(run_every=5)(_progress)(engine, camp, rater)
    if not rater:
        st.info("Enter your name in the sidebar to rate: every vote is saved with its rater.")
        return
    _rate(engine, camp, rater)


__all__ = ["campaign_page"]
