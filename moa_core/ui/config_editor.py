"""Sidebar editor for a MoA config: presets, layers, proposers, aggregator, baselines, I/O.

The editor works on a base config kept in session state. Widgets are keyed with a
version number; loading a preset or an imported file bumps the version, so every
widget starts again from the loaded values instead of keeping its old state.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from moa_core.config import (
    DEFAULT_PRESET,
    ConfigError,
    MoAConfig,
    config_from_dict,
    list_presets,
    load_preset,
    parse_config_text,
)
from moa_core.estimate import estimate
from moa_core.prompts import DEFAULT_AGGREGATOR_TEMPLATE
from moa_core.providers.catalog import config_problems, discover, model_available, short_reason
from moa_core.saved_configs import SavedConfigError, list_saved, load_saved, save_config_named
from moa_core.store.db import StoreError
from moa_core.store.timings import ModelTiming, model_timings
from moa_core.ui.layout import store
from moa_core.ui.safe_text import md_escape
from moa_core.vocab import StageKind, values

OTHER = "other (type a litellm model string)…"
MAX_LAYERS = 4
MAX_PROPOSERS = 6
MAX_STAGES = 8
MAX_IMPORT_BYTES = 256 * 1024


def _k(name: str) -> str:
    return f"cfg{st.session_state.cfg_version}_{name}"


def load_into_editor(config: MoAConfig, source: str) -> None:
    st.session_state.cfg_base = config.model_dump(mode="json")
    st.session_state.cfg_source = source
    st.session_state.cfg_version = st.session_state.get("cfg_version", 0) + 1


def _ensure_state() -> None:
    if "cfg_base" not in st.session_state:
        load_into_editor(load_preset(DEFAULT_PRESET), f"preset:{DEFAULT_PRESET}")


@st.cache_data(ttl=30, show_spinner=False)
def model_choices() -> list[str]:
    return [m.model for m in discover() if m.available]


@st.cache_data(ttl=30, show_spinner=False)
def unavailable_reason(key: str) -> str:
    """Why the `model:`, `preset:` or `saved:` choice cannot run here, in a few words ("" if it can)."""
    kind, _, ref = key.partition(":")
    try:
        if kind == "model":
            ok, why = model_available(ref)
            return short_reason([] if ok else [why])
        config = load_preset(ref) if kind == "preset" else load_saved(ref)
    except ValueError:  # ConfigError, SavedConfigError
        return "invalid config"
    return short_reason(config_problems(config))


def with_availability(key: str, label: str) -> str:
    """A picker label that says when its choice cannot run here, so nobody picks it and waits for an error."""
    why = unavailable_reason(key)
    return f"{label} (unavailable: {why})" if why else label


def _model_picker(label: str, current: str, key: str) -> str:
    options = model_choices()
    if current and current not in options:
        options = [current, *options]
    choice = st.selectbox(
        label, [*options, OTHER], index=options.index(current) if current in options else 0, key=_k(key)
    )
    if choice == OTHER:
        return st.text_input(
            "litellm model string",
            value="",
            key=_k(key + "_free"),
            placeholder="e.g. ollama_chat/llama3.2 or openai/gpt-4o-mini",
        ).strip()
    return choice


def _agent_editor(agent: dict[str, Any], key: str, *, with_system: bool = True) -> dict[str, Any]:
    out = dict(agent)
    out["model"] = _model_picker("Model", agent["model"], key + "_model")
    if out["model"] != agent["model"]:
        out["label"] = None  # a label named after the old model would now be wrong
    c1, c2 = st.columns(2)
    out["temperature"] = c1.slider(
        "Temperature", 0.0, 2.0, float(agent.get("temperature", 0.7)), 0.05, key=_k(key + "_t")
    )
    out["max_tokens"] = int(
        c2.number_input("Max tokens", 1, 32768, int(agent.get("max_tokens", 256)), step=16, key=_k(key + "_mt"))
    )
    if with_system:
        out["system_prompt"] = st.text_area(
            "System prompt", agent.get("system_prompt", ""), height=68, key=_k(key + "_sys")
        )
    return out


def _on_pick() -> None:
    choice = st.session_state.cfg_source_pick
    kind, name = choice.split(":", 1)
    try:
        cfg = load_preset(name) if kind == "preset" else load_saved(name)
    except (ConfigError, SavedConfigError) as err:
        st.session_state.cfg_pick_error = str(err)
        return
    st.session_state.pop("cfg_pick_error", None)
    load_into_editor(cfg, choice)


def _source_picker() -> None:
    """Loading happens only when the user picks (on_change), so an imported config is not
    overwritten by the picker's old value on the next rerun."""
    options = [f"preset:{p}" for p in list_presets()] + [f"saved:{s}" for s in list_saved()]
    if "cfg_pick_next" in st.session_state:
        st.session_state.cfg_source_pick = st.session_state.pop("cfg_pick_next")
    if st.session_state.get("cfg_source_pick") not in options:
        st.session_state.cfg_source_pick = f"preset:{DEFAULT_PRESET}"
    st.selectbox(
        "Preset or saved config",
        options,
        key="cfg_source_pick",
        on_change=_on_pick,
        format_func=lambda o: with_availability(o, o.replace("preset:", "").replace("saved:", "saved · ")),
    )
    source = st.session_state.get("cfg_source", "")
    if source and source != st.session_state.cfg_source_pick:
        st.caption(f"Editing: {md_escape(source.replace('preset:', '').replace('saved:', 'saved · '))}")
    if st.session_state.get("cfg_pick_error"):
        st.error(md_escape(st.session_state.cfg_pick_error))


def _layers_editor(base: dict[str, Any]) -> list[dict[str, Any]]:
    layers = base["layers"]
    n_layers = int(st.number_input("Proposer layers", 1, MAX_LAYERS, min(len(layers), MAX_LAYERS), key=_k("n_layers")))
    out = []
    for k in range(n_layers):
        layer = layers[k] if k < len(layers) else layers[-1]
        props = layer["proposers"]
        with st.expander(f"Layer {k + 1}: {len(props)} proposers", expanded=False):
            n = int(st.number_input("Proposers", 1, MAX_PROPOSERS, min(len(props), MAX_PROPOSERS), key=_k(f"n_{k}")))
            edited = []
            for i in range(n):
                st.markdown(f"**Proposer {i + 1}**")
                edited.append(_agent_editor(props[i] if i < len(props) else props[-1], f"l{k}p{i}"))
        out.append({"proposers": edited})
    return out


def _template_editor(base: dict[str, Any]) -> str:
    if st.button("Reset template to default", key=_k("reset_tpl")):
        st.session_state.cfg_base = {
            **st.session_state.cfg_base,
            "aggregator_template": DEFAULT_AGGREGATOR_TEMPLATE,
        }
        st.session_state.cfg_version += 1
        st.rerun()
    return st.text_area(
        "Aggregator prompt template ({question} and {drafts} are filled in)",
        base["aggregator_template"],
        height=220,
        key=_k("tpl"),
    )


def _aggregator_editor(base: dict[str, Any]) -> tuple[dict[str, Any], str]:
    with st.expander("Aggregator", expanded=False):
        agg = _agent_editor(base["aggregator"], "agg")
        template = _template_editor(base)
    return agg, template


def _baselines_editor(base: dict[str, Any], aggregator: dict[str, Any]) -> list[dict[str, Any]]:
    current = [b["model"] for b in base.get("baselines", [])]
    options = list(dict.fromkeys([*current, aggregator["model"], *model_choices()]))
    picked = st.multiselect(
        "Single-model baselines",
        options,
        default=current,
        key=_k("baselines"),
        help="Answer the same question alone, beside the MoA answer.",
    )
    by_model = {b["model"]: b for b in base.get("baselines", [])}
    agg = aggregator
    return [
        by_model.get(m)
        or {"model": m, "temperature": agg.get("temperature", 0.7), "max_tokens": agg.get("max_tokens", 256)}
        for m in picked
    ]


def _io_section(config: MoAConfig | None) -> None:
    with st.expander("Import / export / save", expanded=False):
        upload = st.file_uploader("Import a config (JSON or YAML)", type=["json", "yaml", "yml"], key="cfg_upload")
        if upload is not None and st.session_state.get("cfg_upload_done") != upload.file_id:
            st.session_state.cfg_upload_done = upload.file_id
            data = upload.getvalue()
            try:
                if len(data) > MAX_IMPORT_BYTES:
                    raise ConfigError(f"the file is {len(data):,} bytes; configs are limited to {MAX_IMPORT_BYTES:,}")
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ConfigError("the file is not UTF-8 text") from None
                fmt = "json" if upload.name.lower().endswith(".json") else "yaml"
                imported = parse_config_text(text, fmt)
            except ConfigError as err:
                st.session_state.cfg_import_error = f"Import failed, nothing changed: {err}"
            else:
                st.session_state.pop("cfg_import_error", None)
                load_into_editor(imported, "imported")
                st.rerun()
        if st.session_state.get("cfg_import_error"):
            st.error(md_escape(st.session_state.cfg_import_error))
        if config is None:
            return
        c1, c2 = st.columns(2)
        c1.download_button(
            "Export JSON", config.to_json(), file_name=f"{config.name}.json", mime="application/json", key="cfg_dl_json"
        )
        c2.download_button(
            "Export YAML", config.to_yaml(), file_name=f"{config.name}.yaml", mime="application/yaml", key="cfg_dl_yaml"
        )
        name = st.text_input("Save as", value="", key="cfg_save_name", max_chars=60, placeholder="my-config")
        if st.button("Save config", key="cfg_save"):
            try:
                saved = save_config_named(config, name)
            except SavedConfigError as err:
                st.error(md_escape(str(err)))
            else:
                load_into_editor(config.model_copy(update={"name": saved}), f"saved:{saved}")
                st.session_state.cfg_pick_next = f"saved:{saved}"  # applied before the picker is drawn
                st.session_state.cfg_saved_msg = f"Saved as “{md_escape(saved)}”."
                st.rerun()
        if st.session_state.get("cfg_saved_msg"):
            st.success(st.session_state.pop("cfg_saved_msg"))


KIND_HELP = (
    "propose: answer (first stage) or refine the drafts before it · review: critique the previous answers, "
    "anonymised, and rank them · synthesize: write the final answer · select: pick the best answer verbatim"
)
STRAGGLERS = {"cancel": "cancel them", "show": "let them finish on screen, marked not used"}
FINAL_KINDS = (StageKind.SYNTHESIZE, StageKind.SELECT)
# The on/off option of a stage kind: (field, checkbox label, help).
STAGE_FLAGS: dict[str, tuple[str, str, str]] = {
    StageKind.REVIEW: (
        "include_own",
        "Count a reviewer's ranking of its own answer",
        "Off: recorded, but left out of the aggregate ranking (an answer's author is matched by name).",
    ),
    StageKind.SYNTHESIZE: (
        "with_reviews",
        "Give the reviews and the ranking too",
        "For a synthesize stage right after a review stage (the council's chairman).",
    ),
}


def as_stages(data: dict[str, Any]) -> dict[str, Any]:
    """Layers and an aggregator as the same pipeline written as stages."""
    out = {k: v for k, v in data.items() if k not in ("layers", "aggregator")}
    out["stages"] = [{"kind": "propose", "agents": layer["proposers"]} for layer in data["layers"]] + [
        {"kind": "synthesize", "agents": [data["aggregator"]]}
    ]
    return out


def _restructure(base: dict[str, Any]) -> None:
    """A new shape (stage added, moved, removed): widgets are keyed by position, so they start again."""
    st.session_state.cfg_base = base
    st.session_state.cfg_version += 1
    st.rerun()


def _quorum_editor(stage: dict[str, Any], n_agents: int, key: str) -> dict[str, Any] | None:
    quorum = stage.get("quorum") or {}
    on = st.checkbox(
        "Quorum: go on after the first k answers",
        value=bool(quorum),
        key=_k(key + "_q"),
        help="The next stage starts once k answers are in (plus the grace time after the k-th).",
    )
    if not on:
        return None
    c1, c2 = st.columns(2)
    k = int(c1.number_input("k", 1, 12, int(quorum.get("k", max(1, n_agents - 1))), key=_k(key + "_qk")))
    grace = float(
        c2.number_input("Grace (s)", 0.0, 600.0, float(quorum.get("grace_s", 0.0)), step=0.5, key=_k(key + "_qg"))
    )
    stragglers = st.radio(
        "Stragglers",
        list(STRAGGLERS),
        index=list(STRAGGLERS).index(quorum.get("stragglers", "cancel")),
        format_func=STRAGGLERS.__getitem__,
        key=_k(key + "_qs"),
        horizontal=True,
    )
    return {"k": k, "grace_s": grace, "stragglers": stragglers}


def _stage_editor(stage: dict[str, Any], i: int, n_stages: int) -> tuple[dict[str, Any], str | None]:
    """One stage's widgets: the edited stage, and "up", "down" or "remove" when one was clicked."""
    kinds = values(StageKind)
    agents = stage["agents"]
    action = None
    with st.expander(f"Stage {i + 1}: {stage['kind']} · {len(agents)} agent(s)", expanded=False):
        c = st.columns([4, 1, 1, 1], vertical_alignment="bottom")
        kind = c[0].selectbox("Kind", kinds, index=kinds.index(stage["kind"]), key=_k(f"s{i}_kind"), help=KIND_HELP)
        if c[1].button("↑", key=_k(f"s{i}_up"), disabled=i == 0, help="Move this stage up"):
            action = "up"
        if c[2].button("↓", key=_k(f"s{i}_down"), disabled=i == n_stages - 1, help="Move this stage down"):
            action = "down"
        if c[3].button("✕", key=_k(f"s{i}_rm"), disabled=n_stages == 1, help="Remove this stage"):
            action = "remove"
        n = int(st.number_input("Agents", 1, MAX_PROPOSERS, min(len(agents), MAX_PROPOSERS), key=_k(f"s{i}_n")))
        edited = []
        for j in range(n):
            st.markdown(f"**Agent {j + 1}**")
            edited.append(_agent_editor(agents[j] if j < len(agents) else agents[-1], f"s{i}a{j}"))
        out: dict[str, Any] = {"kind": kind, "agents": edited}
        if kind in (StageKind.PROPOSE, StageKind.REVIEW):
            quorum = _quorum_editor(stage, n, f"s{i}")
            if quorum is not None:
                out["quorum"] = quorum
        if kind in STAGE_FLAGS:
            name, label, help_text = STAGE_FLAGS[kind]
            out[name] = st.checkbox(label, value=bool(stage.get(name)), key=_k(f"s{i}_{name}"), help=help_text)
    return out, action


def _new_stage(stages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """`stages` with a new stage of `kind`: a final kind goes last; propose or review goes before
    the final stage, with the agents of the stage it follows (reviewers = the proposers)."""
    at = len(stages) - 1 if kind not in FINAL_KINDS and stages[-1]["kind"] in FINAL_KINDS else len(stages)
    before = stages[at - 1] if at > 0 else stages[0]
    agents = [dict(a) for a in before["agents"]]
    if kind in FINAL_KINDS:
        agents = [dict(stages[-1]["agents"][0])]
    return [*stages[:at], {"kind": kind, "agents": agents}, *stages[at:]]


def stages_editor(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stage of the pipeline, editable; adding, moving or removing one redraws the editor."""
    stages = base["stages"]
    st.caption(" → ".join(str(s["kind"]) for s in stages))
    edited: list[dict[str, Any]] = []
    action: tuple[str, int] | None = None
    for i, stage in enumerate(stages):
        out, act = _stage_editor(stage, i, len(stages))
        edited.append(out)
        if act and action is None:
            action = (act, i)
    c = st.columns([3, 2], vertical_alignment="bottom")
    new_kind = c[0].selectbox("New stage", values(StageKind), key=_k("new_kind"), help=KIND_HELP)
    add = c[1].button("Add stage", key=_k("add_stage"), disabled=len(stages) >= MAX_STAGES)
    if add:
        _restructure({**base, "stages": _new_stage(edited, new_kind)})
    if action is not None:
        op, i = action
        if op == "remove":
            edited = edited[:i] + edited[i + 1 :]
        else:
            j = i - 1 if op == "up" else i + 1
            edited[i], edited[j] = edited[j], edited[i]
        _restructure({**base, "stages": edited})
    return edited


def _pipeline_editor(base: dict[str, Any]) -> dict[str, Any]:
    """The edited config data: a config written as stages is edited stage by stage; one written
    as layers and an aggregator keeps that shape (and its stable_hash) until the user asks
    for stages."""
    if base.get("stages"):
        stages = stages_editor(base)
        with st.expander("Prompt template", expanded=False):
            template = _template_editor(base)
        baselines = _baselines_editor(base, stages[-1]["agents"][0] if stages[-1]["agents"] else {"model": ""})
        return {**base, "stages": stages, "aggregator_template": template, "baselines": baselines}
    layers = _layers_editor(base)
    agg, template = _aggregator_editor(base)
    baselines = _baselines_editor(base, agg)
    if st.button(
        "Edit as stages (review, select, quorum…)",
        key=_k("to_stages"),
        help="Turn the layers and the aggregator into a pipeline of stages you can extend.",
    ):
        data = {**base, "layers": layers, "aggregator": agg, "aggregator_template": template, "baselines": baselines}
        _restructure(as_stages(data))
    return {**base, "layers": layers, "aggregator": agg, "aggregator_template": template, "baselines": baselines}


def config_sidebar() -> MoAConfig | None:
    """Draw the editor in the sidebar; returns the valid config, or None (errors shown)."""
    _ensure_state()
    base = st.session_state.cfg_base
    with st.sidebar:
        st.header("MoA config")
        _source_picker()
        data = _pipeline_editor(base)
        config: MoAConfig | None
        try:
            config = config_from_dict(data)
        except ConfigError as err:
            st.error(md_escape(str(err)))
            config = None
        _io_section(config)
    return config


def _stored_timings(config: MoAConfig) -> dict[str, ModelTiming]:
    """How fast the config's models ran before; none when the store cannot say (the estimate
    then uses its defaults: a time estimate is not worth an error)."""
    try:
        return model_timings(store(), [a.model for a in config.all_agents()])
    except StoreError:
        return {}


def config_summary(config: MoAConfig, question: str = "") -> None:
    """The estimate and any blocking problem, shown before running."""
    problems = config_problems(config)
    est = estimate(config, question, timings=_stored_timings(config))
    basis = "from stored runs" if est.calibrated else "default speeds"
    shape = " → ".join(str(s.kind) for s in config.stages) if config.stages else f"{len(config.layers)} layer(s)"
    st.caption(
        f"**{md_escape(config.name)}** · {shape} · {est.calls} calls · "
        f"≤ {est.prompt_tokens + est.completion_tokens:,} tokens · {est.cost_label} · ≈ {est.seconds:.0f}s ({basis})"
    )
    for p in problems:
        st.warning(md_escape(p))
