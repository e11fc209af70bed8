"""Dockerfile word expansion, as Docker's shell-word processor does it.

``$V``, ``${V}``, ``${V:-word}``, ``${V:+word}``, single quotes (literal), double quotes
(``$`` expands; the escape character escapes only ``"``, ``$`` and itself), and the escape
character (``\\`` or the one set by ``# escape=``) outside quotes. An unset variable expands
to the empty string. The environment is a list of ``KEY=value`` where the first entry of a
key wins, as Docker looks it up.
"""

from __future__ import annotations

from collections.abc import Sequence

from moorage.errors import InvalidArgument

_EOF = ""


class ExpansionError(InvalidArgument):
    """A word that cannot be expanded (unterminated quote, bad substitution)."""


class _Words:
    """Splits the expanded text into words (for EXPOSE) the way Docker's wordsStruct does."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word = ""
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace() and self.in_word:
            if self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        elif not ch.isspace():
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def result(self) -> list[str]:
        if self.in_word and self.word:
            return [*self.words, self.word]
        return list(self.words)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch


def _lookup(env: Sequence[str], name: str) -> str | None:
    for entry in env:
        key, sep, value = entry.partition("=")
        if key == name:
            return value if sep else ""
    return None


class _Shell:
    def __init__(self, text: str, env: Sequence[str], escape: str) -> None:
        self.s = _Scanner(text)
        self.env = env
        self.escape = escape

    def process(self) -> tuple[str, list[str]]:
        return self.stop_on(_EOF)

    def stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        special = {"'": self.single_quote, '"': self.double_quote, "$": self.dollar}
        while self.s.peek() != _EOF:
            ch = self.s.peek()
            if stop and ch == stop:
                self.s.next()
                return "".join(out), words.result()
            fn = special.get(ch)
            if fn is not None:
                tmp = fn()
                out.append(tmp)
                if ch == "$":
                    words.add_string(tmp)
                else:
                    words.add_raw_string(tmp)
                continue
            ch = self.s.next()
            if ch == self.escape:
                ch = self.s.next()
                if ch == _EOF:
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        self.s.next()
        out: list[str] = []
        while True:
            ch = self.s.next()
            if ch == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.s.next()
        out: list[str] = []
        while True:
            if self.s.peek() == _EOF:
                raise ExpansionError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            ch = self.s.peek()
            if ch == '"':
                self.s.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.s.next()
            if ch == self.escape and self.s.peek() in ('"', "$", self.escape):
                ch = self.s.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while self.s.peek() != _EOF:
            ch = self.s.peek()
            if not out and ch.isdigit():
                while self.s.peek() != _EOF and self.s.peek().isdigit():
                    out.append(self.s.next())
                return "".join(out)
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.s.next())
        return "".join(out)

    def dollar(self) -> str:
        self.s.next()  # the $
        if self.s.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return _lookup(self.env, name) or ""
        self.s.next()  # the {
        name = self.name()
        ch = self.s.next()
        if ch == "}":
            return _lookup(self.env, name) or ""
        if ch == ":":
            modifier = self.s.next()
            word, _ = self.stop_on("}")
            value = _lookup(self.env, name) or ""
            if modifier == "+":
                return word if value else ""
            if modifier == "-":
                return value or word
            raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
        raise ExpansionError("missing ':' in substitution")


def process_word(word: str, env: Sequence[str], escape: str = "\\") -> str:
    """One word expanded and unquoted (ENV, LABEL, COPY, WORKDIR, USER, ... arguments)."""
    return _Shell(word, env, escape).process()[0]


def process_words(word: str, env: Sequence[str], escape: str = "\\") -> list[str]:
    """Expanded and split into words at unquoted whitespace (EXPOSE)."""
    return _Shell(word, env, escape).process()[1]
