"""The reliability suite in a real browser, against one app started with fake keys.

Load (5 sessions at once), faults as the page shows them, bad config and question
uploads, an over-long question, hostile text on every page, keys never in the page
HTML / log / database / exports, and the server bound to loopback. The app reaches the
fake OpenAI server over HTTP through configs imported with the sidebar uploader.
Tests run in file order; the key search is last, after every other test used the keys.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest
import yaml

from moa_core.store import add_vote, dispose_engines, export_all, open_db
from moa_core.ui.run_view import run_link
from tests.browser_support import ask, open_app, wait_idle, wait_run_done
from tests.reliability.conftest import CUSTOM_KEY_ENV, FAKE_CUSTOM_KEY, FAKE_OPENAI_KEY, rows

pytestmark = pytest.mark.browser

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
JS_LINK = "[click me](javascript:alert(3))"
A_TAG = '<a href="javascript:alert(4)">a-tag</a>'
REF_LINK = "[ref link][r1]\n\n[r1]: javascript:alert(5)"
AUTOLINK = "<javascript:alert(6)>"
ENTITY_LINK = "[entity](jav&#x09;ascript:alert(7))"
PLOTLY_LINK = '<a href="javascript:alert(8)">plotly</a>'
# Links Streamlit's renderer keeps as links (it only blocks javascript: and vbscript:).
DATA_LINK = "[data link](data:text/html,<script>alert(9)</script>)"
FILE_AUTOLINK = "<file:///etc/passwd>"
VBS_LINK = "[vbs link](vbscript:msgbox(10))"
ENTITY_DATA = "[entity data](d&#97;ta:text/html,x)"
DATA_IMG = "![data img](data:image/svg+xml,<svg onload=alert(11)>)"
FILE_REF = "[file ref][f1]\n\n[f1]: file:///etc/hosts"
HOSTILE = (
    f"{IMG} {SCRIPT} {JS_LINK} {A_TAG} {AUTOLINK} {ENTITY_LINK} {PLOTLY_LINK}\n\n{REF_LINK}\n\n"
    f"{DATA_LINK} {FILE_AUTOLINK} {VBS_LINK} {ENTITY_DATA} {DATA_IMG}\n\n{FILE_REF}"
)
# Names are never markdown: links (backticks to break out of a code span) in each kind.
CFG_NAME = "hostile-cfg `[cfg](data:text/html,c)`"
MODEL = "openai/hostile-mock`[model](data:text/html,m)`"
RATER = f"rater {IMG} [rater](data:text/html,r)"

# Every attribute that could run or load something, anywhere in the DOM (HTML and SVG).
DANGEROUS_JS = r"""() => {
  const out = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const v = (a.value || '').replace(/[\s\u0000-\u001f]/g, '').toLowerCase();
      if (/^on/i.test(a.name) && /alert\(/.test(a.value)) out.push(`${el.tagName} ${a.name}`);
      if (/(^|:)(href|src|action|formaction|data)$/i.test(a.name) && v.startsWith('javascript:'))
        out.push(`${el.tagName} ${a.name}=${a.value}`);
    }
  }
  for (const s of document.scripts) if (s.textContent.includes('alert(')) out.push('SCRIPT ' + s.textContent.slice(0, 60));
  for (const f of document.querySelectorAll('iframe[srcdoc]')) if (f.srcdoc.includes('alert(')) out.push('IFRAME srcdoc');
  return out;
}"""

# Every anchor (HTML or SVG) must go to http(s), mailto or a fragment of the page; no image
# may come from the hostile text.
ANCHORS_JS = r"""() => {
  const out = [];
  for (const a of document.querySelectorAll('a, area')) {
    const raw = a.getAttribute('href') ?? a.getAttribute('xlink:href');
    if (raw === null || raw.trim().startsWith('#')) continue;
    let scheme;
    try { scheme = new URL(raw, document.baseURI).protocol; } catch (e) { scheme = 'unparsable'; }
    if (!['http:', 'https:', 'mailto:'].includes(scheme)) out.push(`${a.tagName} href=${raw}`);
  }
  for (const im of document.querySelectorAll('img, image')) {
    const src = im.getAttribute('src') ?? im.getAttribute('href') ?? '';
    if (/alert\(|data:text|file:/.test(src) || (im.alt || '').includes('data img')) out.push(`${im.tagName} src=${src}`);
  }
  return out;
}"""


# ---------------------------------------------------------------- helpers


def agent(server, name: str, **opts: object) -> dict:
    suffix = ",".join(f"{k}={v}" for k, v in opts.items())
    return {
        "model": f"openai/fake-{name}" + (f"@{suffix}" if suffix else ""),
        "label": name,
        "api_base": server.url,
        "max_tokens": 64,
    }


def start_upload(page, path: Path) -> None:
    """Through the sidebar uploader, as a user does (opening the expander if needed)."""
    sidebar = page.get_by_test_id("stSidebar")
    drop = sidebar.get_by_test_id("stFileUploaderDropzone")
    if not drop.is_visible():
        sidebar.get_by_text("Import / export / save").click()
        drop.wait_for()
    sidebar.locator("input[type=file]").set_input_files(str(path))


def upload(page, path: Path) -> None:
    start_upload(page, path)
    wait_idle(page)


def import_config(page, tmp_path: Path, config: dict, marker: str) -> None:
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(yaml.safe_dump(config))
    upload(page, path)
    page.get_by_text(marker).first.wait_for()
    wait_idle(page)


def goto(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def app_rows(app, sql: str, **params) -> list[tuple]:
    engine = open_db(app.db_url)
    try:
        return rows(engine, sql, **params)
    finally:
        dispose_engines(app.db_url)


def caption(page) -> str:
    return next((ln for ln in page.inner_text("body").splitlines() if "layer(s)" in ln), "")


# ---------------------------------------------------------------- load


def test_five_sessions_at_once_all_complete(browser, rel_app, fault_server, tmp_path):
    """Five browser sessions each import a fake-server config and ask at the same moment:
    all five runs complete on their pages and in the database (the 20-session load is
    engine-level, in test_load.py)."""
    slow = dict(tokens=20, delay=0.08)  # 1.6 s a call: the five runs overlap even if asking is slow
    cfg = {
        "name": "rel-load",
        "timeout": 30,
        "num_retries": 1,
        "layers": [
            {
                "proposers": [
                    agent(fault_server, "load-p0", **slow),
                    agent(fault_server, "load-p1", **slow),
                    {**agent(fault_server, "load-p2", **slow), "api_key_env": CUSTOM_KEY_ENV},
                ]
            }
        ],
        "aggregator": agent(fault_server, "load-agg", **slow),
        "baselines": [agent(fault_server, "load-solo", **slow)],
    }
    before = {r[0] for r in app_rows(rel_app, "select id from run")}
    path = tmp_path / "load.yaml"
    path.write_text(yaml.safe_dump(cfg))
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(5)]
    try:
        pages = [ctx.new_page() for ctx in contexts]
        # set-up interleaved across the sessions, so the server works on all of them at once
        for pg in pages:
            pg.set_default_timeout(90_000)
            pg.goto(rel_app.url + "/")
        for pg in pages:
            pg.get_by_test_id("stApp").wait_for()
            wait_idle(pg)
            start_upload(pg, path)
        for pg in pages:
            pg.get_by_text("rel-load").first.wait_for()
        for pg in pages:
            wait_idle(pg)
        for i, pg in enumerate(pages):
            ask(pg, f"Session {i}: why is the sky blue?")
        for pg in pages:
            wait_run_done(pg)
        for i, pg in enumerate(pages):
            body = pg.inner_text("body")
            assert f"Session {i}: why is the sky blue?" in body and "done" in body
    finally:
        for ctx in contexts:
            ctx.close()
    runs = [
        r
        for r in app_rows(rel_app, "select id, status, created_at, wall_time, question from run")
        if r[0] not in before
    ]
    assert len(runs) == 5 and all(r[1] == "done" for r in runs), runs
    assert max(r[2] for r in runs) < min(r[2] + r[3] for r in runs), "the five runs were not in flight together"
    for run_id, *_ in runs:
        gens = app_rows(rel_app, "select status, text from generation where run_id = :r", r=run_id)
        assert len(gens) == 5 and all(s == "done" and len(t.split()) == 20 for s, t in gens)
    assert f"Bearer {FAKE_CUSTOM_KEY}" in fault_server.auth, "the app sent the api_key_env key to the provider"


# ---------------------------------------------------------------- faults on the page


def test_faults_shown_on_the_page_agree_with_the_database(page, rel_app, fault_server, tmp_path):
    cfg = {
        "name": "rel-faults",
        "timeout": 4,
        "num_retries": 0,
        "layers": [{"proposers": [agent(fault_server, "steady"), agent(fault_server, "broken", fail=500)]}],
        "aggregator": agent(fault_server, "agg-down", fail=500),
        "baselines": [agent(fault_server, "stuck", fail="hang")],
    }
    open_app(page, rel_app)
    import_config(page, tmp_path, cfg, "rel-faults")
    t0 = time.time()
    ask(page, "A question that meets every fault")
    wait_run_done(page, timeout=120_000)
    assert time.time() - t0 < 120, "liveness: the run must end (4 s timeouts)"
    run = app_rows(
        rel_app, "select id, status, error from run where question = :q", q="A question that meets every fault"
    )
    assert len(run) == 1
    run_id, status, error = run[0]
    assert status == "failed" and error.startswith("The aggregator agg-down failed: ")
    body = page.inner_text("body")
    assert "failed" in body and error in body, "the run's one message is on the page"
    gens = dict(
        (
            (label, (st, err))
            for label, st, err in app_rows(
                rel_app, "select label, status, error from generation where run_id = :r", r=run_id
            )
        )
    )
    assert gens["steady"] == ("done", None)
    assert gens["broken"][0] == "error" and gens["agg-down"][0] == "error" and gens["stuck"] == ("error", "timed out")
    for label in ("broken", "agg-down", "stuck"):
        assert gens[label][1] in body, f"{label}'s error as stored is what the page shows"


# ---------------------------------------------------------------- bad input on the page


def test_bad_config_imports_say_why_and_change_nothing(page, rel_app, fault_server, tmp_path):
    good = {
        "name": "rel-good",
        "timeout": 10,
        "num_retries": 0,
        "layers": [{"proposers": [agent(fault_server, "g0"), agent(fault_server, "g1")]}],
        "aggregator": agent(fault_server, "gagg"),
    }
    open_app(page, rel_app)
    import_config(page, tmp_path, good, "rel-good")
    runs_before = app_rows(rel_app, "select count(*) from run")
    shown = caption(page)
    assert shown.startswith("rel-good") and "3 calls" in shown
    cases = [
        (
            "syntax.yaml",
            "name: broken\nlayers: [\n  {proposers: [}\n",
            "Import failed, nothing changed: YAML syntax error at line 3, column",
        ),
        (
            "syntax.json",
            '{"name": "broken", "layers": [}',
            "Import failed, nothing changed: JSON syntax error at line 1",
        ),
        (
            "schema.yaml",
            yaml.safe_dump(
                {
                    "name": "broken",
                    "layers": [{"proposers": [{"modle": "openai/x"}]}],
                    "aggregator": {"model": "openai/x"},
                }
            ),
            "Import failed, nothing changed: invalid config: layers.0.proposers.0.model: required field is missing",
        ),
        (
            "hot.yaml",
            yaml.safe_dump({**good, "name": "broken", "aggregator": {**agent(fault_server, "gagg"), "temperature": 9}}),
            "Import failed, nothing changed: invalid config: aggregator.temperature: Input should be less than or equal to 2",
        ),
        (
            "big.yaml",
            "# " + "x" * 300_000 + "\n" + yaml.safe_dump({**good, "name": "broken"}),
            "Import failed, nothing changed: the file is 300,",
        ),
    ]
    for name, content, message in cases:
        path = tmp_path / name
        path.write_text(content)
        upload(page, path)
        page.get_by_text(message).first.wait_for(timeout=30_000)
        assert caption(page) == shown, f"{name} changed the config"
    # over the 2 MB upload limit: refused in the browser, never reaches the app
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (2 * 1024 * 1024 + 10) + "\n")
    upload(page, huge)
    page.get_by_text("or smaller").first.wait_for(timeout=30_000)
    assert caption(page) == shown
    assert app_rows(rel_app, "select count(*) from run") == runs_before, "nothing ran, nothing was written"


def test_over_long_question_gets_the_limit_message(page, rel_app):
    open_app(page, rel_app)
    runs_before = app_rows(rel_app, "select count(*) from run")
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill("z" * 200_000)
    page.wait_for_timeout(300)
    kept = page.evaluate("document.querySelector('[data-testid=stChatInputTextArea]').value.length")
    assert kept == 200_000, f"the box kept {kept} of 200,000 characters and said nothing"
    box.press("Enter")
    page.get_by_text("The question is 200,000 characters long; the limit is 100,000.").first.wait_for(timeout=30_000)
    assert app_rows(rel_app, "select count(*) from run") == runs_before


def test_bad_question_files_on_the_evaluate_page(page, rel_app, tmp_path):
    open_app(page, rel_app)
    goto(page, "Evaluate")
    runs_before = app_rows(rel_app, "select count(*) from run")
    page.get_by_text("Upload JSONL").click()
    wait_idle(page)
    cases = [
        ("malformed.jsonl", b'{"question": "one?"}\n{"question": "two?"\n', "malformed: line 2: invalid JSON"),
        (
            "latin1.jsonl",
            '{"question": "caf\xe9?"}\n'.encode("latin-1"),
            "latin1: line 1: not UTF-8 text (byte 0xe9); save the file as UTF-8",
        ),
    ]
    for name, data, message in cases:
        path = tmp_path / name
        path.write_bytes(data)
        page.locator(".st-key-ev_upload input[type=file]").set_input_files(str(path))
        wait_idle(page)
        page.get_by_text(message).first.wait_for(timeout=30_000)
    assert app_rows(rel_app, "select count(*) from run") == runs_before


# ---------------------------------------------------------------- hostile text


LABELS = [f"lbl-img {IMG}", "lbl-link `[label](file:///etc/passwd)`", f"agg {A_TAG}", f"solo {PLOTLY_LINK}"]


def hostile_config() -> dict:
    def mock(label: str, text: str, model: str = "openai/hostile-mock") -> dict:
        return {"model": model, "label": label, "max_tokens": 64, "extra": {"mock_response": text}}

    return {
        "name": CFG_NAME,
        "num_retries": 0,
        "layers": [
            {
                "proposers": [
                    mock(LABELS[0], f"draft one {HOSTILE}"),
                    mock(LABELS[1], f"draft two {HOSTILE}", MODEL),
                ]
            }
        ],
        "aggregator": mock(LABELS[2], f"final {HOSTILE}"),
        "baselines": [mock(LABELS[3], f"alone {HOSTILE}")],
    }


def assert_inert(page, where: str, dialogs: list[str]) -> None:
    wait_idle(page)
    found = page.evaluate(DANGEROUS_JS)
    assert found == [], f"{where}: {found}"
    anchors = page.evaluate(ANCHORS_JS)
    assert anchors == [], f"{where}: links or images the policy forbids: {anchors}"
    for link in page.locator("a", has_text="click me").all():
        if link.is_visible():
            link.click(force=True, no_wait_after=True)
    page.wait_for_timeout(300)
    assert not dialogs, f"{where}: a dialog opened: {dialogs}"


def visible(page) -> str:
    return page.inner_text("body").replace("\u200b", "")


def test_hostile_text_is_inert_on_every_page(page, rel_app, tmp_path):
    """Hostile model output, question, config name, labels, model string, rater name and
    rating comment, then votes on those answers: shown as text on the Playground, History
    (list and run), Analysis, Arena, Evaluate, Daily challenge and Models pages. No anchor
    anywhere goes elsewhere than http(s), mailto or the page itself."""
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_app(page, rel_app)
    import_config(page, tmp_path, hostile_config(), "hostile-cfg")
    question = f"hostile question {HOSTILE}"
    ask(page, question)
    wait_run_done(page)
    assert_inert(page, "Playground", dialogs)
    body = visible(page)
    assert "onerror=alert(1)" in body and "<script>alert(2)</script>" in body, "shown as text"
    for text in (
        DATA_LINK,
        FILE_AUTOLINK,
        VBS_LINK,
        "[entity data](data:text/html,x)",
        DATA_IMG,
        "[f1]: file:///etc/hosts",
    ):
        assert text in body, f"a forbidden link is shown as its text: {text}"
    for name in (CFG_NAME, *LABELS, MODEL):
        assert name in body, f"a name is shown as written: {name}"

    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_label("Your name (for ratings)").fill(RATER)
    page.keyboard.press("Tab")
    wait_idle(page)
    page.get_by_role("button", name="Rate").first.click()
    pop = page.get_by_test_id("stPopoverBody")
    pop.get_by_text("2★").click()
    pop.get_by_label("Comment (optional)").fill(f"comment {SCRIPT} {JS_LINK} {A_TAG} {DATA_LINK}")
    pop.get_by_role("button", name="Save rating").click()
    page.get_by_text("Rating saved (2★)").wait_for()
    assert_inert(page, "Playground after rating", dialogs)

    run_id = app_rows(
        rel_app, "select id from run where question like 'hostile question%' order by created_at desc limit 1"
    )[0][0]
    ids = dict(app_rows(rel_app, "select role, id from generation where run_id = :r and role != 'proposer'", r=run_id))
    engine = open_db(rel_app.db_url)
    try:
        for k, outcome in enumerate(("left", "left", "right", "tie")):  # one vote per pair and rater
            add_vote(
                engine, ids["aggregator"], ids["baseline"], outcome, f"voter{k} {IMG} {FILE_AUTOLINK}", run_id=run_id
            )
    finally:
        dispose_engines(rel_app.db_url)

    page.goto(rel_app.url + run_link(run_id))
    wait_idle(page)
    page.get_by_text("hostile question").first.wait_for()
    body = visible(page)
    assert f"comment {SCRIPT} {JS_LINK} {A_TAG} {DATA_LINK}" in body and f"by {RATER}" in body
    assert f"preset {CFG_NAME}" in body and MODEL in body
    assert_inert(page, "History run page", dialogs)
    for title in ("History", "Analysis", "Arena", "Evaluate", "Daily challenge", "Models"):
        goto(page, title)
        page.wait_for_timeout(500)
        assert_inert(page, title, dialogs)
        if title == "Analysis":
            # The leaderboard table is drawn on a canvas; the charts' SVG text names the contender.
            page.locator(".js-plotly-plot").first.wait_for()
            charts = " ".join(c.text_content() or "" for c in page.locator(".js-plotly-plot").all())
            assert "hostile-cfg" in charts, charts[:500]


# ---------------------------------------------------------------- keys and binding


def test_keys_never_in_page_html_log_database_or_exports(page, rel_app, tmp_path):
    """Runs by now: 5 sessions (env key and an api_key_env key sent to the provider),
    faults, hostile mocks. Neither key is in any page, the server log, the database
    files or an export."""
    keys = [FAKE_OPENAI_KEY, FAKE_CUSTOM_KEY]
    assert app_rows(rel_app, "select count(*) from run")[0][0] >= 1
    html: dict[str, str] = {}
    open_app(page, rel_app)
    html["Playground"] = page.content()
    for title in ("History", "Analysis", "Arena", "Evaluate", "Daily challenge", "Models"):
        goto(page, title)
        html[title] = page.content()
    for (run_id,) in app_rows(rel_app, "select id from run order by created_at desc limit 3"):
        page.goto(rel_app.url + run_link(run_id))
        wait_idle(page)
        html[f"run {run_id[:8]}"] = page.content()
    leaks = {name: [k for k in keys if k in text] for name, text in html.items()}
    assert not any(leaks.values()), leaks
    log = rel_app.log_text()
    assert log and not [k for k in keys if k in log], "a key is in the app's log"
    db_files = {p.name: p.read_bytes() for p in rel_app.db_path.parent.glob(rel_app.db_path.name + "*")}
    engine = open_db(rel_app.db_url)
    try:
        for fmt in ("csv", "jsonl"):
            for p in export_all(engine, tmp_path / fmt, fmt):
                db_files[f"{fmt}/{p.name}"] = p.read_bytes()
    finally:
        dispose_engines(rel_app.db_url)
    found = {name: [k for k in keys if k.encode() in blob] for name, blob in db_files.items()}
    assert not any(found.values()), found


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6}."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, _, p = local.rpartition(":")
            if state == "0A" and int(p, 16) == port:
                out.add(addr)
    return out


def _non_loopback_ipv4() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_server_listens_on_loopback_only(rel_app):
    port = int(rel_app.url.rsplit(":", 1)[1])
    addrs = _listening_addresses(port)
    assert addrs == {"0100007F"}, f"listening on {addrs} (0100007F is 127.0.0.1)"
    ip = _non_loopback_ipv4()
    if ip is not None:
        with pytest.raises(OSError):
            socket.create_connection((ip, port), timeout=3).close()
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
