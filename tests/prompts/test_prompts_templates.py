"""Templates are data: the built-in files load, user files and folders override them, broken ones are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from recllm.data import ItemCatalog
from recllm.errors import ConfigError
from recllm.prompts import (
    TASKS,
    PromptBuilder,
    PromptConfig,
    available_templates,
    builtin_template_dir,
    load_template,
    load_template_file,
)

CUSTOM = """
[template]
task = "next-item"
variant = "zero-shot"
answer_tokens = 5

[parts]
system = "CUSTOM SYSTEM for {nouns}"
task = "CUSTOM TASK: guess the next {noun}."
history_header = "Seen ({n_history}):"
item_line = "* {title} <{id}>{rating}"
rating = " [{value:g}]"
output_format = "CUSTOM FORMAT: one title."
"""


def test_every_task_has_builtin_templates_that_load() -> None:
    found = available_templates()
    assert {task for task, _ in found} == set(TASKS)
    assert ("rank-listwise", "chain-of-thought") in found and ("rank-verbalizer", "few-shot") in found
    for task, variant in found:
        template = load_template(task, variant)
        assert template.task == task and template.variant == variant
        assert template.part("output_format") and template.part("task")
    assert set(load_template("rank-listwise").output_formats) == {"lines", "json"}


def test_custom_file_overrides_the_builtin(tmp_path: Path, catalog: ItemCatalog) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(CUSTOM)
    prompt = PromptBuilder(catalog, "next-item", template=path).build([("m1", 4.0), "m2"])
    assert prompt.messages[0] == {"role": "system", "content": "CUSTOM SYSTEM for movies"}
    user = prompt.messages[1]["content"]
    assert user.startswith("CUSTOM TASK: guess the next movie.")
    assert "Seen (2):\n* Movie Number 1 (1981) <m1> [4]\n* Movie Number 2 (1982) <m2>" in user
    assert user.endswith("CUSTOM FORMAT: one title.")
    assert prompt.template == str(path)


def test_a_folder_overrides_only_the_files_it_has(tmp_path: Path, catalog: ItemCatalog) -> None:
    (tmp_path / "next-item.zero-shot.toml").write_text(CUSTOM)
    assert load_template("next-item", path=tmp_path).part("task").startswith("CUSTOM TASK")
    builtin = load_template("rating", path=tmp_path)  # no rating file there: the built-in one
    assert builtin.source == str(builtin_template_dir() / "rating.zero-shot.toml")


@pytest.mark.parametrize(("edit", "field"), [
    (lambda t: t.replace("guess the next {noun}", "guess the next {genre}"), "parts.task"),
    (lambda t: t.replace('item_line = "* {title} <{id}>{rating}"', 'item_line = "* {label}"'), "parts.item_line"),
    (lambda t: t.replace('output_format = "CUSTOM FORMAT: one title."\n', ""), "parts.output_format"),
    (lambda t: t.replace('task = "CUSTOM TASK: guess the next {noun}."', 'task = "   "'), "parts.task"),
    (lambda t: t.replace('rating = " [{value:g}]"', 'rating = " [{}]"'), "parts.rating"),
    (lambda t: t.replace('rating = " [{value:g}]"', 'rating = " [{value:d}]"'), "parts.rating"),
    (lambda t: t + 'typo_part = "x"\n', "parts.typo_part"),
    (lambda t: t.replace('variant = "zero-shot"', 'variant = "few-shot"'), "parts.demonstrations_header"),
    (lambda t: t.replace('answer_tokens = 5', 'answer_tokens = -1'), "template.answer_tokens"),
])
def test_a_broken_template_names_file_and_field(tmp_path: Path, edit: object, field: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(edit(CUSTOM))  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        load_template_file(path)
    assert str(path) in str(caught.value)
    assert field in str(caught.value)


def test_unknown_field_message_lists_what_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(CUSTOM.replace("{noun}.", "{genre}."))
    with pytest.raises(ConfigError, match=r"unknown field '\{genre\}'.*allowed here: .*noun"):
        load_template_file(path)


def test_likelihood_answer_prefix_is_required_and_has_no_trailing_space(tmp_path: Path) -> None:
    text = CUSTOM.replace('task = "next-item"', 'task = "rank-likelihood"')
    path = tmp_path / "likelihood.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"parts\.answer_prefix"):
        load_template_file(path)
    path.write_text(text + 'answer_prefix = "Next: "\n')
    with pytest.raises(ConfigError, match=r"parts\.answer_prefix.*whitespace"):
        load_template_file(path)


def test_a_file_for_another_task_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(CUSTOM)
    with pytest.raises(ConfigError, match=r"mine\.toml.*template\.task"):
        load_template("rating", path=path)
    with pytest.raises(ConfigError, match=r"missing\.toml: template file not found"):
        load_template_file(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown prompt task 'ranking'"):
        load_template("ranking")


def test_prompt_config_from_toml_rejects_misspelt_keys(tmp_path: Path) -> None:
    path = tmp_path / "prompt.toml"
    path.write_text('[prompt]\ntask = "rank-listwise"\nvariant = "few-shot"\nn_shots = 3\noutput = "json"\n')
    config = PromptConfig.from_toml(path)
    assert (config.task, config.variant, config.n_shots, config.output) == ("rank-listwise", "few-shot", 3, "json")
    path.write_text('[prompt]\ntask = "rank-listwise"\nn_shot = 3\n')
    with pytest.raises(ConfigError, match=r"prompt\.toml \[prompt\]: n_shot"):
        PromptConfig.from_toml(path)
