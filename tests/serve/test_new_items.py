"""Items added at run time (POST /items) through a real server: stored, searchable and recommended at once from
their text without refitting, never returned to a user who disliked them, and still there after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api import service

from postgres import fresh_database

SEQUEL = {"title": "Star Wars: Rebels Rising", "year": 1999, "genres": ["Action", "Adventure", "Sci-Fi", "War"],
          "description": "Rebels fight the Empire in a new space war after Return of the Jedi."}
TRILOGY = ["50", "172", "181"]  # Star Wars, The Empire Strikes Back, Return of the Jedi


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'service.sqlite'}"
        return
    with fresh_database(request.getfixturevalue("postgres_server"), "items") as url:
        yield url


def listed(client: httpx.Client, path: str, **body: object) -> list[dict[str, object]]:
    response = client.post(path, json=body) if body else client.get(path, params={"k": 10})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_a_new_item_is_stored_found_and_recommended_at_once_and_survives_a_restart(db_url: str, ml100k) -> None:
    with service(db_url, "--llm", "none") as api:
        assert api.get("/health").json()["items"] == 1682
        before = [i["item"] for i in listed(api, "/recommendations", history=TRILOGY, k=10)]
        created = api.post("/items", json=SEQUEL)
        assert created.status_code == 201, created.text
        new = created.json()["item"]
        assert new.startswith("new-") and created.json()["title"] == SEQUEL["title"]
        assert api.get(f"/items/{new}").json()["genres"] == SEQUEL["genres"]
        assert api.get("/health").json()["items"] == 1683
        assert api.get("/items/search", params={"q": "star wars: rebels rising"}).json()[0]["item"] == new

        for body, status, fragment in (({**SEQUEL, "item": "50"}, 409, "exists already"),
                                       ({**SEQUEL, "item": new}, 409, "exists already"),
                                       ({**SEQUEL, "title": ""}, 422, "title"),
                                       ({**SEQUEL, "year": 3000}, 422, "year"),
                                       ({**SEQUEL, "rating": 5}, 422, "rating")):
            answer = api.post("/items", json=body)
            assert answer.status_code == status and fragment in answer.json()["error"], answer.text

        adhoc = listed(api, "/recommendations", history=TRILOGY, k=10)
        placed = [i for i in adhoc if i["item"] == new]
        assert placed, [i["title"] for i in adhoc]
        assert "new in the catalog" in str(placed[0]["reason"]) and placed[0]["reason_checked"] is True
        assert all(i["reason"] is None for i in adhoc if i["item"] != new)
        assert [i["item"] for i in adhoc if i["item"] != new] == before[:9]  # the retrieved items keep their order

        for item in TRILOGY:
            assert api.post("/feedback", json={"user": "fan", "item": item, "kind": "like"}).status_code == 201
        assert new in [i["item"] for i in listed(api, "/users/fan/recommendations")]
        assert api.get(f"/users/fan/explanations/{new}").status_code == 409
        assert api.post("/feedback", json={"user": "fan", "item": new, "kind": "dislike"}).status_code == 201
        assert new not in [i["item"] for i in listed(api, "/users/fan/recommendations")]

    with service(db_url, "--llm", "none") as api:  # a restart reads the item back from the database
        assert api.get(f"/items/{new}").json()["title"] == SEQUEL["title"]
        assert new in [i["item"] for i in listed(api, "/recommendations", history=TRILOGY, k=10)]
        assert new not in [i["item"] for i in listed(api, "/users/fan/recommendations")]
