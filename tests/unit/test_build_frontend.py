"""Dockerfile word expansion, .dockerignore rules and the frontend's checks."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.build.frontend import DockerfileError, parse
from moorage.build.ignore import Matcher, read_patterns
from moorage.build.shell import ExpansionError, process_word, process_words

ENV = ["A=1", "B=two words", "EMPTY=", "A=shadowed"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "1"),
        ("${A}", "1"),
        ("x${A}y", "x1y"),
        ("$A$A", "11"),
        ("${UNSET}", ""),
        ("$UNSET", ""),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${A:-dflt}", "1"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:-${A}x}", "1x"),
        ("'$A'", "$A"),
        ('"$A"', "1"),
        ('"${B}"', "two words"),
        ("\\$A", "$A"),
        ('"\\$A"', "$A"),
        ('"\\x"', "\\x"),
        ('"a\\"b"', 'a"b'),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("$-", "$-"),
        ("100$", "100$"),
        ("$1x", "x"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert process_word(word, ENV) == expected


def test_backtick_escape() -> None:
    assert process_word("`$A", ENV, "`") == "$A"
    assert process_word("C:\\path", ENV, "`") == "C:\\path"


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("'open", "single-quote"),
        ('"open', "double-quote"),
        ("${A", "missing ':'"),
        ("${A:?x}", "unsupported modifier (?)"),
        ("${A:-x", "matching }"),
        ("${A-x}", "missing ':'"),
    ],
)
def test_process_word_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=re.escape(message)):
        process_word(word, ENV)


def test_process_words_splits_unquoted_whitespace() -> None:
    assert process_words("$B 80 '443 x'", ENV) == ["two", "words", "80", "443 x"]


def _ignored(patterns: str, path: str) -> bool:
    return Matcher(read_patterns(patterns)).excluded(path)


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("*.log", "a.log", True),
        ("*.log", "d/a.log", False),
        ("**/*.log", "d/e/a.log", True),
        ("**/*.log", "a.log", True),
        ("**/*.log\n!keep.log", "keep.log", False),
        ("!keep.log\n**/*.log", "keep.log", True),
        ("dir", "dir/sub/file", True),
        ("/dir/", "dir/file", True),
        ("d?r", "dir", True),
        ("d[a-j]r", "dir", True),
        ("d[!a-j]r", "dir", False),
        ("# comment\n\n  x  ", "x", True),
        ("a/**", "a/b/c", True),
        ("a/**/c", "a/c", True),
        ("a/**/c", "a/b/d/c", True),
        ("*", "anything", True),
        ("*\n!src", "src/x", False),
    ],
)
def test_dockerignore(patterns: str, path: str, excluded: bool) -> None:
    assert _ignored(patterns, path) is excluded


def test_parse_stages_and_meta_args() -> None:
    df = parse("ARG V=1\nFROM bb:$V AS One\nRUN x\nFROM one\nCOPY --from=one /a /b\n")
    assert [a.original for a in df.meta_args] == ["ARG V=1"]
    assert [(s.base, s.name) for s in df.stages] == [("bb:$V", "one"), ("one", "")]
    assert df.stage_index("ONE") == 0
    assert df.stages[1].instructions[0].flag("from") == "one"


def test_escape_directive() -> None:
    assert parse("# escape=`\nFROM x\n").escape == "`"
    assert parse("FROM x\n# escape=`\n").escape == "\\"
    with pytest.raises(DockerfileError, match="invalid ESCAPE"):
        parse("# escape=x\nFROM x\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
        ("RUN x\n", "Dockerfile:1: no build stage"),
        ("FROM x\nCOPY --bogus=1 a b\n", "Dockerfile:2: unknown flag: bogus"),
        ("FROM x\nENV\n", "Dockerfile:2: ENV requires at least one argument"),
        ("FROM a b\n", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM x AS a\nFROM y AS a\n", "Dockerfile:2: duplicate name"),
        ("FROM x\nONBUILD FROM y\n", "Dockerfile:2: FROM isn't allowed"),
        ("FROM x\nRUN <<EOF\nabc\n", "unterminated heredoc"),
        ("", "the Dockerfile \\(Dockerfile\\) cannot be empty"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse(text)


def test_heredoc_flags() -> None:
    df = parse('FROM x\nCOPY <<-"EOF" /y\n\thi $A\n\tEOF\n')
    doc = df.stages[0].instructions[0].heredocs[0]
    assert (doc.content, doc.expand, doc.chomp) == ("hi $A\n", False, True)


# ---- properties ---------------------------------------------------------------------------


_plain = st.text(
    alphabet=st.characters(blacklist_characters="$'\"\\`", blacklist_categories=("Cs",)),
    max_size=40,
)


@given(_plain)
def test_plain_words_are_unchanged(word: str) -> None:
    assert process_word(word, ENV) == word


@given(st.text(alphabet=st.characters(blacklist_characters="'", blacklist_categories=("Cs",))))
def test_single_quotes_keep_everything(text: str) -> None:
    assert process_word(f"'{text}'", ENV) == text


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_escaping_every_character_gives_it_back(text: str) -> None:
    assert process_word("".join("\\" + c for c in text), ENV) == text


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_expansion_never_fails_but_with_expansion_error(text: str) -> None:
    try:
        process_word(text, ENV)
        process_words(text, ENV)
    except ExpansionError:
        pass


@given(st.lists(st.sampled_from(["a", "b", "*", "**", "?", "x.log", "!"]), max_size=5))
def test_ignore_matcher_total(parts: list[str]) -> None:
    pattern = "/".join(p for p in parts if p) or "x"
    if pattern.startswith("!") and not pattern[1:].strip():
        return
    Matcher([pattern]).excluded("a/b/x.log")
