"""Compose variable interpolation and .env files."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.compose.dotenv import parse_dotenv, read_dotenv
from moorage.compose.errors import ComposeError
from moorage.compose.interpolate import TemplateError, expand, interpolate_tree
from moorage.compose.yamlsrc import load_yaml

ENV = {"SET": "value", "EMPTY": "", "TAG": "1.2", "B": "bee"}


@pytest.mark.parametrize(
    ("template", "result"),
    [
        ("plain", "plain"),
        ("$SET", "value"),
        ("${SET}", "value"),
        ("x${SET}y", "xvaluey"),
        ("$SET-suffix", "value-suffix"),
        ("${UNSET}", ""),
        ("$UNSET", ""),
        ("$$", "$"),
        ("$$SET", "$SET"),
        ("a$$b$$", "a$b$"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${SET:-dflt}", "value"),
        ("${UNSET-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${SET-dflt}", "value"),
        ("${SET:+repl}", "repl"),
        ("${EMPTY:+repl}", ""),
        ("${UNSET:+repl}", ""),
        ("${EMPTY+repl}", "repl"),
        ("${UNSET+repl}", ""),
        ("${SET:?must}", "value"),
        ("${EMPTY?must}", ""),
        ("${UNSET:-${B}}", "bee"),
        ("${UNSET:-${ALSO:-deep}}", "deep"),
        ("${UNSET:-a:b/c}", "a:b/c"),
        ("${UNSET:-}", ""),
        ("img:${TAG}", "img:1.2"),
        ("${UNSET:-$$HOME}", "$HOME"),
    ],
)
def test_expand(template: str, result: str) -> None:
    assert expand(template, ENV) == result


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("${UNSET:?need it}", "required variable UNSET is missing a value: need it"),
        ("${EMPTY:?}", "required variable EMPTY is missing a value"),
        ("${UNSET?gone}", "required variable UNSET is missing a value: gone"),
        ("${UNSET", "missing closing brace"),
        ("${}", "invalid variable name"),
        ("${1X}", "invalid variable name"),
        ("${SET%x}", "invalid operator"),
        ("cost $5", "a $ must start a variable"),
    ],
)
def test_expand_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("$", r"\$")):
        expand(template, ENV)


def test_tree_interpolates_values_not_keys_and_keeps_marks() -> None:
    data = load_yaml("services:\n  $SET:\n    image: app:${TAG}\n    ports: ['${P:-80}:80']\n", "f")
    out = interpolate_tree(data, ENV)
    assert out == {"services": {"$SET": {"image": "app:1.2", "ports": ["80:80"]}}}
    assert str(out["services"]["$SET"].key_marks["image"]) == "f:3:5"
    assert str(out["services"]["$SET"]["ports"].item_marks[0]) == "f:4:13"


def test_tree_required_variable_names_it_with_path_and_place() -> None:
    data = load_yaml("services:\n  web:\n    image: 'app:${TAG:?set TAG}'\n", "c.yaml")
    with pytest.raises(ComposeError) as e:
        interpolate_tree(data, {})
    assert str(e.value) == (
        "c.yaml:3:5: services.web.image: required variable TAG is missing a value: set TAG"
    )


def test_tree_invalid_template_says_how_to_escape() -> None:
    data = load_yaml("services:\n  web:\n    command: echo $1\n", "c.yaml")
    with pytest.raises(ComposeError, match=r"invalid interpolation format.*write \$\$"):
        interpolate_tree(data, {})


def test_dotenv_forms() -> None:
    text = (
        "# comment\n"
        "A=1\n"
        "export B = two  # trailing comment\n"
        "C='literal ${A}'\n"
        'D="line\\nnext ${A}"\n'
        "E\n"
        "F=\n"
        'G="multi\nline"\n'
        "H=a#b\n"
        "I=${A}${B}\n"
        "UNSET_BARE\n"
        'J="quote \\" inside"\n'
    )
    env = parse_dotenv(text, lookup={"E": "from-env"})
    assert env == {
        "A": "1",
        "B": "two",
        "C": "literal ${A}",
        "D": "line\nnext 1",
        "E": "from-env",
        "F": "",
        "G": "multi\nline",
        "H": "a#b",
        "I": "1two",
        "J": 'quote " inside',
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1X=2\n", "unexpected character"),
        ("A 2\n", "expected '='"),
        ("A='open\n", "unterminated single-quoted"),
        ('A="open\n', "unterminated double-quoted"),
        ("A=${B:?needed}\n", "required variable B"),
    ],
)
def test_dotenv_errors(text: str, message: str) -> None:
    with pytest.raises(ComposeError, match=message):
        parse_dotenv(text, "x.env")


def test_read_dotenv_missing(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / "nope", required=False) == {}
    with pytest.raises(ComposeError, match="not found"):
        read_dotenv(tmp_path / "nope")
