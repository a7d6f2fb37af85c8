"""The web page end to end in headless Chromium (Debian's, driven by playwright): chat, explained cards,
feedback that visibly changes the list, and the aspect breakdown. A screenshot is saved to test-artifacts/."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import free_port, running_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("RECLLM_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (RECLLM_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("no chromium on PATH (install Debian's chromium)")
    return path


@contextmanager
def served_page(tmp_path: Path, llm: str) -> Iterator[tuple[str, Any, list[str]]]:
    """`recllm serve` with ``llm`` and a Chromium page on it: (base URL, page, JavaScript errors seen)."""
    executable = chromium()
    from playwright.sync_api import sync_playwright

    port = free_port()
    command = [sys.executable, "-m", "recllm", "serve", "--port", str(port), "--db",
               f"sqlite:///{tmp_path / 'service.sqlite'}", "--llm", llm]
    with running_server(command, port, timeout=180) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        yield base, page, errors
        browser.close()


def test_chat_cards_feedback_and_aspects_in_a_real_browser(tmp_path: Path, ml100k):
    from playwright.sync_api import expect

    with served_page(tmp_path, "none") as (_, page, errors):
        expect(page.locator("#status")).to_contain_text("movielens-100k: 1,682 movies")
        recs = page.locator("#recs .card")
        expect(recs).to_have_count(8)
        before = recs.evaluate_all("cards => cards.map(c => c.dataset.item)")

        page.fill("#chat-input", "I loved Alien and The Terminator, something from the 80s, no comedy")
        page.click("#chat-send")
        expect(page.locator("#messages li.assistant")).to_contain_text("Here are 5 suggestions")
        cards = page.locator("#chat-items .card")
        expect(cards).to_have_count(5)
        for text in cards.all_inner_texts():
            year = int(text.split("(")[1][:4])
            assert 1980 <= year <= 1989 and "Comedy" not in text.split("\n")[1]

        cards.nth(0).locator("button.like").click()  # feedback: the "For you" list now follows this user
        expect(page.locator("#user-label")).to_contain_text("web-")
        page.wait_for_function(
            "before => { const now = [...document.querySelectorAll('#recs .card')].map(c => c.dataset.item);"
            " return now.length === 8 && now.join() !== before.join(); }", arg=before)

        page.locator("#recs .card").nth(0).locator("button.why").click()
        dialog = page.locator("#aspects-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("tbody tr")).to_have_count(5)
        expect(dialog).to_contain_text("Overall match")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
        assert not errors, errors
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000


def test_one_identity_across_chat_cards_and_feedback_and_a_dead_model_shown(tmp_path: Path, ml100k):
    """The visitor's id (kept in the browser) owns the chat session from the first message; a card disliked
    in the chat never comes back in the next chat answer or the list; with the model server gone, the status
    line and the reply say so in words."""
    from playwright.sync_api import expect

    with served_page(tmp_path, f"openai:http://127.0.0.1:{free_port()}/v1") as (base, page, errors):
        expect(page.locator("#status")).to_contain_text("language model unavailable")
        user = page.evaluate("localStorage.getItem('recllm-user')")

        page.fill("#chat-input", "something funny from the 90s")
        page.click("#chat-send")
        expect(page.locator("#messages li.assistant").last).to_contain_text("not answering")
        session = page.evaluate("localStorage.getItem('recllm-session')")
        assert httpx.get(f"{base}/chat/{session}").json()["user"] == user  # tied to the visitor at once
        cards = page.locator("#chat-items .card")
        expect(cards).to_have_count(5)
        disliked = cards.nth(0).get_attribute("data-item")
        cards.nth(0).locator("button.dislike").click()
        expect(cards.nth(0)).to_have_class("card disliked")

        page.fill("#chat-input", "something funny from the 90s please")
        page.click("#chat-send")
        expect(page.locator("#messages li.assistant")).to_have_count(2)
        page.wait_for_function("() => document.querySelectorAll('#chat-items .card').length === 5")
        shown = page.locator("#chat-items .card").evaluate_all("cards => cards.map(c => c.dataset.item)")
        assert disliked not in shown
        listed = httpx.get(f"{base}/users/{user}/recommendations", params={"k": 50}).json()["items"]
        assert disliked not in {i["item"] for i in listed}
        assert not errors, errors
