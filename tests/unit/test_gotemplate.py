"""The Go text/template engine behind --format."""

from __future__ import annotations

import dataclasses
import enum
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import InvalidArgument
from moorage.format import NO_VALUE, Template, TemplateError, format_value, render, sprintf, to_json

IMAGE = {
    "Id": "sha256:abc",
    "Repository": "nginx",
    "Tag": "latest",
    "RepoTags": ["nginx:latest", "nginx:1.25"],
    "Config": {
        "Labels": {"a.b": "x", "maintainer": "me"},
        "Env": ["PATH=/usr/bin", "A=1"],
        "Cmd": None,
    },
    "Args": ["-g", "daemon off;"],
    "Name": "web",
    "State": {"Status": "running", "Pid": 42, "Running": True},
    "Size": 1234,
}


def r(template: str, data: object = None) -> str:
    return Template(template).render(data)


# --------------------------------------------------------------------------- text, fields


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("{{.Repository}}:{{.Tag}}", "nginx:latest"),
        ("{{.State.Pid}}", "42"),
        ("{{.State.Running}}", "true"),
        ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
        ("{{.Config.Labels}}", "map[a.b:x maintainer:me]"),
        ("{{.Config.Cmd}}", "<nil>"),
        ("{{.Missing}}", "<no value>"),
        ("{{.Missing.Deeper}}", "<no value>"),
        ("{{.Config.Missing}}", "<no value>"),
        ("{{ .Name }}", "web"),
        ("{{$.Name}}", "web"),
        ("{{$}}", format_value(IMAGE)),
        ("a}}b", "a}}b"),
        ("{ {.Name} }", "{ {.Name} }"),
        ("{{(.State).Pid}}", "42"),
        ("line1\n{{.Name}}\nline3", "line1\nweb\nline3"),
    ],
)
def test_fields(template: str, expected: str) -> None:
    assert r(template, IMAGE) == expected


def test_dot_is_the_whole_value() -> None:
    assert r("{{.}}", "hello") == "hello"
    assert r("{{.}}", 7) == "7"
    assert r("{{.}}", None) == "<nil>"


def test_dict_lookup_is_exact_key() -> None:
    assert r("{{.id}}", {"Id": "x"}) == "<no value>"
    assert r("{{.Id}}", {"Id": "x"}) == "x"


@dataclasses.dataclass
class Container:
    Name: str
    Pid: int
    Labels: dict[str, str] = dataclasses.field(default_factory=dict)
    _secret: str = "hidden"

    def Label(self, key: str) -> str:
        return self.Labels.get(key, "")

    def Upper(self) -> str:
        return self.Name.upper()


def test_objects_are_structs() -> None:
    c = Container("web", 3, {"com.example": "yes"})
    assert r("{{.Name}} {{.Pid}}", c) == "web 3"
    assert r('{{.Label "com.example"}}', c) == "yes"
    assert r("{{.Upper}}", c) == "WEB"
    assert r("{{.Labels}}", c) == "map[com.example:yes]"
    assert r("{{.}}", Container("a", 1)) == "{a 1 map[] hidden}"


def test_missing_field_on_struct_is_an_error() -> None:
    with pytest.raises(TemplateError) as exc:
        r("{{.Nope}}", Container("web", 3))
    assert str(exc.value) == (
        'template parsing error: template: :1:2: executing "" at <.Nope>: '
        "can't evaluate field Nope in type Container"
    )


def test_unexported_field_is_not_visible() -> None:
    with pytest.raises(TemplateError, match="can't evaluate field _secret"):
        r("{{._secret}}", Container("web", 3))


@pytest.mark.parametrize(
    ("template", "data", "message"),
    [
        ("{{.Foo}}", "str", "can't evaluate field Foo in type string"),
        ("{{.Foo}}", 3, "can't evaluate field Foo in type int"),
        ("{{.Foo}}", [1], "can't evaluate field Foo in type []interface {}"),
        ("{{.A.B}}", {"A": None}, "nil pointer evaluating interface {}.B"),
        ("{{.Name 1}}", {"Name": "x"}, "Name is not a method but has arguments"),
        (
            "{{.Name 1}}",
            Container("w", 1),
            "Name has arguments but cannot be invoked as function",
        ),
    ],
)
def test_field_errors(template: str, data: object, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        r(template, data)
    assert message in str(exc.value)
    assert str(exc.value).startswith("template parsing error: template: :1:")


def test_error_position_and_context() -> None:
    with pytest.raises(TemplateError) as exc:
        r("{{.A}}\nxx {{.B.C}}", {"A": 1, "B": 2})
    assert str(exc.value) == (
        'template parsing error: template: :2:5: executing "" at <.B.C>: '
        "can't evaluate field C in type int"
    )


def test_error_context_is_truncated() -> None:
    with pytest.raises(TemplateError) as exc:
        r('{{index .Config.Labels "some.long.label.key" 1}}', IMAGE)
    assert "at <index .Config.Labels...>: error calling index" in str(exc.value)


def test_errors_are_invalid_argument() -> None:
    assert issubclass(TemplateError, InvalidArgument)
    with pytest.raises(InvalidArgument):
        Template("{{")


def test_callable_map_values_are_methods() -> None:
    row = {"Label": lambda key: {"a": "1"}.get(key, ""), "Names": lambda: "web"}
    assert r('{{.Label "a"}}|{{.Label "b"}}|{{.Names}}', row) == "1||web"


# --------------------------------------------------------------------------- printing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        (1, "1"),
        (-5, "-5"),
        (True, "true"),
        (False, "false"),
        (None, "<nil>"),
        (NO_VALUE, "<no value>"),
        (1.5, "1.5"),
        (1.0, "1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.23456789e8, "1.23456789e+08"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (["a", "b", "c"], "[a b c]"),
        ([], "[]"),
        ((1, 2), "[1 2]"),
        ([1, [2, 3], None], "[1 [2 3] <nil>]"),
        ({"k2": "v2", "k1": "v1"}, "map[k1:v1 k2:v2]"),
        ({}, "map[]"),
        ({"a": {"b": None}}, "map[a:map[b:<nil>]]"),
        ({2: "x", 10: "y", 1: "z"}, "map[1:z 2:x 10:y]"),
        ({"b", "a"}, "[a b]"),
        (b"hi", "[104 105]"),
    ],
)
def test_format_value(value: object, expected: str) -> None:
    assert format_value(value) == expected


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def test_enums_print_their_value() -> None:
    assert format_value(Color.RED) == "red"
    assert format_value(Level.HIGH) == "3"
    assert r("{{.}}", Color.RED) == "red"


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{"a\\tb\\n\\"q\\"\\\\"}}', 'a\tb\n"q"\\'),
        ('{{"\\u00e9\\U0001F600\\x41\\101"}}', "é😀AA"),
        ('{{"\\xc3\\xa9"}}', "é"),
        ("{{`raw \\n {{ }}`}}", "raw \\n {{ }}"),
        ("{{42}}", "42"),
        ("{{-7}}", "-7"),
        ("{{+7}}", "7"),
        ("{{1.5}}", "1.5"),
        ("{{1e3}}", "1000"),
        ("{{.5}}", "0.5"),
        ("{{0x1F}}", "31"),
        ("{{0o17}}", "15"),
        ("{{017}}", "15"),
        ("{{0b101}}", "5"),
        ("{{1_000}}", "1000"),
        ("{{0x1p4}}", "16"),
        ("{{'a'}}", "97"),
        ("{{'\\n'}}", "10"),
        ("{{true}} {{false}}", "true false"),
        ("{{print nil}}", "<nil>"),
    ],
)
def test_literals(template: str, expected: str) -> None:
    assert r(template) == expected


# --------------------------------------------------------------------------- trim, comments


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a  {{- .A}}", "a1"),
        ("{{.A -}}  \n\t b", "1b"),
        ("a \n {{- .A -}} \n b", "a1b"),
        ("a {{-1}}", "a -1"),  # no space after "-": a negative number, not a trim marker
        ("{{/* a comment */}}x", "x"),
        ("a {{- /* comment */ -}} b", "ab"),
        ("{{/* multi\nline */}}x", "x"),
        ("{{- .A}}", "1"),
    ],
)
def test_trim_markers_and_comments(template: str, expected: str) -> None:
    assert r(template, {"A": 1}) == expected


# --------------------------------------------------------------------------- control flow


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("{{if .A}}y{{end}}", {"A": 1}, "y"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": 0}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": None}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": ""}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": " "}, "y"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": []}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": [0]}, "y"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": {}}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": 0.0}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": False}, "n"),
        ("{{if .A}}y{{else}}n{{end}}", {"A": Container("x", 0)}, "y"),
        (
            "{{if eq .N 1}}one{{else if eq .N 2}}two{{else if eq .N 3}}three{{else}}many{{end}}",
            {"N": 3},
            "three",
        ),
        (
            "{{if eq .N 1}}one{{else if eq .N 2}}two{{else}}many{{end}}",
            {"N": 9},
            "many",
        ),
        ("{{with .S}}{{.Pid}}{{end}}", {"S": {"Pid": 7}}, "7"),
        ("{{with .S}}{{.Pid}}{{else}}none{{end}}", {}, "none"),
        ("{{with .A}}a={{.}}{{else with .B}}b={{.}}{{else}}-{{end}}", {"B": 2}, "b=2"),
        ("{{with $x := .S}}{{$x.Pid}}{{end}}", {"S": {"Pid": 3}}, "3"),
        ("{{if $x := .A}}{{$x}}{{else}}{{$x}}!{{end}}", {"A": 0}, "0!"),
    ],
)
def test_if_and_with(template: str, data: object, expected: str) -> None:
    assert r(template, data) == expected


def test_docker_status_conditional() -> None:
    template = '{{if eq .State.Status "running"}}up{{else}}down{{end}}'
    assert r(template, IMAGE) == "up"
    assert r(template, {"State": {"Status": "exited"}}) == "down"
    assert r(template, {}) == "down"


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("{{range .RepoTags}}{{.}} {{end}}", IMAGE, "nginx:latest nginx:1.25 "),
        ("{{range .}}{{.}},{{end}}", [1, 2, 3], "1,2,3,"),
        ("{{range .}}{{.}}{{else}}empty{{end}}", [], "empty"),
        ("{{range .}}{{.}}{{else}}empty{{end}}", {}, "empty"),
        ("{{range .Nope}}{{.}}{{else}}empty{{end}}", {}, "empty"),
        ("{{range .}}{{.}}{{else}}empty{{end}}", None, "empty"),
        ("{{range $i, $e := .}}{{$i}}={{$e}} {{end}}", ["a", "b"], "0=a 1=b "),
        ("{{range $e := .}}{{$e}}{{end}}", ["a", "b"], "ab"),
        ("{{range $k, $v := .}}{{$k}}={{$v}};{{end}}", {"b": 2, "a": 1, "c": 3}, "a=1;b=2;c=3;"),
        ("{{range .}}{{.}}{{end}}", {"b": 2, "a": 1}, "12"),
        ("{{range $v := .}}{{$v}}{{end}}", {"b": 2, "a": 1}, "12"),
        ("{{range $k, $v := .}}{{$k}}{{end}}", {10: "x", 2: "y"}, "210"),
        ("{{range .L}}{{$.X}}{{.}}{{end}}", {"L": [1, 2], "X": "-"}, "-1-2"),
        ("{{range 3}}{{.}}{{end}}", None, "012"),
        ("{{range .}}{{.}}{{end}}", ("x", "y"), "xy"),
        ("{{range .}}{{.}}{{end}}", {"b", "a"}, "ab"),
        ("{{range .}}{{range .}}{{.}}{{end}};{{end}}", [[1, 2], [3]], "12;3;"),
        (
            "{{range .}}{{if eq . 2}}{{continue}}{{end}}{{if eq . 4}}{{break}}{{end}}{{.}}{{end}}",
            [1, 2, 3, 4, 5],
            "13",
        ),
        ("{{range .}}{{break}}{{else}}empty{{end}}", [], "empty"),
        ("{{$x := 0}}{{range .}}{{$x = .}}{{end}}{{$x}}", [1, 2, 3], "3"),
        ("{{range .}}{{$y := .}}{{$y}}{{end}}", [1, 2], "12"),
    ],
)
def test_range(template: str, data: object, expected: str) -> None:
    assert r(template, data) == expected


def test_range_over_a_string_is_an_error() -> None:
    with pytest.raises(TemplateError, match="range can't iterate over abc"):
        r("{{range .}}{{.}}{{end}}", "abc")


# --------------------------------------------------------------------------- variables


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{$x := .Name}}{{$x}}", "web"),
        ("{{$x := .Name}}{{$x = .Tag}}{{$x}}", "latest"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        ("{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}", "21"),
        ("{{$x := .State}}{{$x.Status}}", "running"),
        ("{{$s := .State}}{{with .Config}}{{$s.Pid}}{{end}}", "42"),
        ("{{$ := 1}}{{$}}", "1"),
    ],
)
def test_variables(template: str, expected: str) -> None:
    assert r(template, IMAGE) == expected


def test_variable_scope_ends_with_its_block() -> None:
    with pytest.raises(TemplateError, match='undefined variable "\\$x"'):
        Template("{{if true}}{{$x := 1}}{{end}}{{$x}}")
    with pytest.raises(TemplateError, match='undefined variable "\\$i"'):
        Template("{{range $i, $e := .}}{{end}}{{$i}}")


# --------------------------------------------------------------------------- pipelines, functions


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Name | upper}}", "WEB"),
        ('{{.Name | upper | printf "%q"}}', '"WEB"'),
        ('{{.Name | printf "%s-%s" "x"}}', "x-web"),
        ('{{index (split "a,b,c" ",") 1}}', "b"),
        ('{{index .Config.Labels "a.b"}}', "x"),
        ('{{index .Config.Labels "nope"}}', ""),
        ("{{index .RepoTags 1}}", "nginx:1.25"),
        ('{{(index .Config.Labels "a.b") | upper}}', "X"),
        ('{{join .Args ","}}', "-g,daemon off;"),
        ('{{printf "%-10s|" .Name}}', "web       |"),
        (
            "{{json .Config}}",
            '{"Labels":{"a.b":"x","maintainer":"me"},"Env":["PATH=/usr/bin","A=1"],"Cmd":null}',
        ),
        ("{{json .Args}}", '["-g","daemon off;"]'),
        ("{{json .Missing}}", "null"),
        ("{{len .RepoTags}}", "2"),
        ("{{len .Config.Labels}}", "2"),
        ("{{len .Name}}", "3"),
        ("{{.RepoTags | len}}", "2"),
        (
            '{{upper .Name}} {{lower "ABC"}} {{title "hello wide-world"}}',
            "WEB abc Hello Wide-World",
        ),
        ('{{truncate .Id 6}} {{truncate "ab" 5}}', "sha256 ab"),
        ('[{{pad .Name 2 1}}][{{pad "" 2 1}}]', "[  web ][]"),
        ('{{split "a:b" ":"}}', "[a b]"),
        ("{{slice .RepoTags 1}}", "[nginx:1.25]"),
        ('{{slice "abcdef" 1 3}}', "bc"),
        ("{{not .State.Running}}", "false"),
        ('{{and 1 2}} {{and 1 0 2}} {{or 0 ""}} {{or 0 "x"}}', "2 0  x"),
        ("{{and .Missing .Crash.Field}}", "<no value>"),
        ('{{eq .Name "web"}} {{ne .Name "web"}} {{eq .Size 1 1234}}', "true false true"),
        (
            '{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{lt 1 2.5}}',
            "true true true false true",
        ),
        ('{{print "a" "b" 1 2 "c"}}', "ab1 2c"),
        ('{{println "a" 1}}', "a 1\n"),
        ("{{html \"<a href='x'>&</a>\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
        ('{{js "it\'s <b>"}}', "it\\'s \\u003Cb\\u003E"),
        ('{{urlquery "a b&c=d"}}', "a+b%26c%3Dd"),
        ('{{if and (eq .Tag "latest") (ne .Name "")}}ok{{end}}', "ok"),
        ('{{if or (eq .Tag "x") .State.Running}}ok{{end}}', "ok"),
        ('{{.Size | printf "%d bytes"}}', "1234 bytes"),
    ],
)
def test_functions(template: str, expected: str) -> None:
    assert r(template, IMAGE) == expected


def test_and_or_short_circuit() -> None:
    # the failing field on a string is never evaluated
    assert r("{{and .A .S.Nope}}", {"A": 0, "S": "str"}) == "0"
    assert r("{{or .A .S.Nope}}", {"A": 1, "S": "str"}) == "1"


def test_index_missing_key_in_interface_map_is_no_value() -> None:
    assert r('{{index . "x"}}', {"a": 1}) == "<no value>"
    assert r('{{index . "x"}}', {"a": "s"}) == ""


def test_custom_functions() -> None:
    t = Template(
        "{{shout .}} {{add 1 2}}", funcs={"shout": lambda s: s + "!", "add": lambda a, b: a + b}
    )
    assert t.render("hi") == "hi! 3"
    with pytest.raises(TemplateError, match="wrong number of args for add: want 2 got 1"):
        Template("{{add 1}}", funcs={"add": lambda a, b: a + b}).render(None)
    with pytest.raises(ValueError):
        Template("x", funcs={"not-an-ident": str})


def test_custom_function_errors_are_wrapped() -> None:
    def boom(_: object) -> str:
        raise RuntimeError("kaput")

    with pytest.raises(TemplateError, match="error calling boom: kaput"):
        Template("{{boom .}}", funcs={"boom": boom}).render(1)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{index .L 5}}", "error calling index: index out of range: 5"),
        ('{{index .L "a"}}', "error calling index: cannot index slice/array with type string"),
        ("{{index .Missing 0}}", "error calling index: index of untyped nil"),
        ("{{index 3 0}}", "error calling index: can't index item of type int"),
        ("{{len 3}}", "error calling len: len of type int"),
        ("{{len .Missing}}", "error calling len: len of nil pointer"),
        ("{{slice .L 2 1}}", "index out of range: 2"),
        ('{{eq 1 "a"}}', "error calling eq: incompatible types for comparison"),
        ("{{eq 1}}", "error calling eq: missing argument for comparison"),
        ('{{lt 1 "a"}}', "error calling lt: incompatible types for comparison"),
        ("{{lt true false}}", "error calling lt: invalid type for comparison"),
        ("{{join 1}}", "wrong number of args for join: want 2 got 1"),
        ("{{and}}", "wrong number of args for and: want at least 1 got 0"),
        ('{{join "a" ","}}', "wrong type for value; expected []string; got string"),
        ('{{truncate "a" "b"}}', "wrong type for value; expected int; got string"),
        ("{{nil}}", "nil is not a command"),
        ("{{1 2}}", "can't give argument to non-function 1"),
        ("{{. 2}}", "can't give argument to non-function ."),
        ('{{template "nope"}}', 'template "nope" not defined'),
        ("{{json .F}}", "error calling json: json: unsupported value: NaN"),
    ],
)
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        r(template, {"L": [1], "F": float("nan")})
    text = str(exc.value)
    assert text.startswith("template parsing error: template: :1:")
    assert "executing" in text
    assert text.endswith(message)


# --------------------------------------------------------------------------- printf


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%s", ("x",), "x"),
        ("%d", (42,), "42"),
        ("%v", ([1, "a"],), "[1 a]"),
        ("%v", ({"b": 1, "a": None},), "map[a:<nil> b:1]"),
        ("%q", ("hi\n",), '"hi\\n"'),
        ("%q", (65,), "'A'"),
        ("%#q", ("raw",), "`raw`"),
        ("%+q", ("é",), '"\\u00e9"'),
        ("%x %X %o %b %O", (255, 255, 8, 5, 8), "ff FF 10 101 0o10"),
        ("%#x %#o %#b", (255, 8, 5), "0xff 010 0b101"),
        ("%x % x %X", ("hi", "hi", "hi"), "6869 68 69 6869"),
        ("%5s|%-5s|%05d|%-5d|%+d|% d", ("a", "b", 42, 7, 3, 3), "    a|b    |00042|7    |+3| 3"),
        ("%05d", (-42,), "-0042"),
        ("%.3d", (7,), "007"),
        ("%.2s", ("abcdef",), "ab"),
        (
            "%f %.2f %8.3f %e %E",
            (3.14159, 3.14159, 3.14159, 1234.5, 1234.5),
            "3.141590 3.14    3.142 1.234500e+03 1.234500E+03",
        ),
        ("%08.3f", (-3.14159,), "-003.142"),
        ("%g %g %g %.3g", (1e6, 100000.0, 0.00001, 1234.5678), "1e+06 100000 1e-05 1.23e+03"),
        ("%v %v", (1.5, float("inf")), "1.5 +Inf"),
        ("%t %v", (True, False), "true false"),
        ("%c %U %#U", (65, 0x1F600, 65), "A U+1F600 U+0041 'A'"),
        (
            "%T %T %T %T %T %T",
            ("s", 1, 1.5, True, [1], {}),
            "string int float64 bool []interface {} map[string]interface {}",
        ),
        ("%%", (), "%"),
        ("%d%%", (5,), "5%"),
        ("%*d|%-*d|", (5, 1, 4, 2), "    1|2   |"),
        ("%.*f", (2, 3.14159), "3.14"),
        ("%[2]s %[1]s", ("a", "b"), "b a"),
        ("%s", (1,), "%!s(int=1)"),
        ("%d", ("x",), "%!d(string=x)"),
        ("%d", (True,), "%!d(bool=true)"),
        ("%s", (None,), "%!s(<nil>)"),
        ("%v", (None,), "<nil>"),
        ("%s %s", ("a",), "a %!s(MISSING)"),
        ("%s", ("a", 1, "b"), "a%!(EXTRA int=1, string=b)"),
        ("%z", (1,), "%!z(int=1)"),
        ("abc%", (), "abc%!(NOVERB)"),
        ("%[5]s", ("a",), "%!s(BADINDEX)"),
    ],
)
def test_sprintf(fmt: str, args: tuple[object, ...], expected: str) -> None:
    assert sprintf(fmt, *args) == expected


def test_printf_in_template() -> None:
    assert r('{{printf "%-8s%5d" .Name .Size}}', IMAGE) == "web      1234"
    assert r('{{printf "%v" .Missing}}', IMAGE) == "<nil>"


# --------------------------------------------------------------------------- define/template/block


def test_define_template_block() -> None:
    t = (
        '{{define "t"}}[{{.}}]{{end}}{{template "t" .A}}{{template "t"}}'
        '{{block "b" .B}}<{{.}}>{{end}}'
    )
    assert r(t, {"A": 1, "B": 2}) == "[1][<nil>]<2>"


def test_template_recursion_is_bounded() -> None:
    with pytest.raises(TemplateError, match="exceeded maximum template depth"):
        r('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}', 1)


def test_template_sees_only_its_own_variables() -> None:
    with pytest.raises(TemplateError, match='undefined variable "\\$x"'):
        Template('{{define "t"}}{{$x}}{{end}}{{$x := 1}}{{template "t"}}')


# --------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Foo", "unclosed action"),
        ("{{", "unclosed action"),
        ("{{foo}}", 'function "foo" not defined'),
        ("{{.ID }", 'unexpected "}" in operand'),
        ("{{.ID}", "bad character U+007D '}'"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{if .X}}", "unexpected EOF"),
        ("{{range .X}}a", "unexpected EOF"),
        ("{{}}", "missing value for command"),
        ("{{if}}{{end}}", "missing value for if"),
        ("{{$x}}", 'undefined variable "$x"'),
        ("{{$x = 1}}", 'undefined variable "$x"'),
        ("{{range $i, $e, $f := .}}{{end}}", "too many declarations in range"),
        ("{{$a, $b := .}}", "too many declarations in command"),
        ("{{.X | 1}}", "non executable command in pipeline stage 2"),
        ('{{.X | "s"}}', "non executable command in pipeline stage 2"),
        ("{{break}}", "{{break}} outside {{range}}"),
        ("{{continue}}", "{{continue}} outside {{range}}"),
        ('{{"abc}}', "unterminated quoted string"),
        ("{{`abc}}", "unterminated raw quoted string"),
        ("{{'a}}", "unterminated character constant"),
        ("{{'ab'}}", "malformed character constant: 'ab'"),
        ('{{"\\q"}}', "invalid syntax"),
        ("{{3x}}", 'bad number syntax: "3x"'),
        ("{{0x}}", 'illegal number syntax: "0x"'),
        ("{{1.2.3}}", 'unexpected ".3" in operand'),
        ("{{-.A}}", 'bad number syntax: "-.A"'),
        ("{{/* x }}", "unclosed comment"),
        ("{{/* x */ .A}}", "comment ends before closing delimiter"),
        ("{{if 1}}{{else}}{{else}}{{end}}", "expected end; found {{else}}"),
        ("{{)}}", "unexpected right paren"),
        ("{{(.X}}", "unclosed left paren"),
        ("{{.X :}}", "expected :="),
        ('{{"a".X}}', 'unexpected . after term "\\"a\\""'),
        ("{{.X}}{{end}}", "unexpected {{end}}"),
        ("{{| .X}}", 'unexpected "|" in command'),
        ('{{if 1}}{{define "x"}}{{end}}{{end}}', "unexpected <define> in command"),
        ("{{define}}", 'unexpected "}}" in define clause'),
        ("{{template .X}}", 'unexpected ".X" in template clause'),
        ("{{template}}", 'unexpected "}}" in template clause'),
        ("{{.X\x00}}", "bad character U+0000"),
        ("{{\u00e9}}", 'function "\u00e9" not defined'),
        ("{{if .A}}{{end}}{{end}}", "unexpected {{end}}"),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as exc:
        Template(template)
    text = str(exc.value)
    assert text.startswith("template parsing error: template: :1: ")
    assert text.endswith(message), text


def test_parse_error_reports_line() -> None:
    with pytest.raises(TemplateError) as exc:
        Template("a\nb\n{{foo}}")
    assert str(exc.value) == 'template parsing error: template: :3: function "foo" not defined'


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(TemplateError):
        Template("{{" + "(" * 500 + "1" + ")" * 500 + "}}")


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1}, '{"a":1}'),
        ({"b": [1, 2], "a": None}, '{"b":[1,2],"a":null}'),
        ([], "[]"),
        ({}, "{}"),
        ("<&>", '"<&>"'),
        ("é\u2028", '"é\\u2028"'),
        ("tab\t\n", '"tab\\t\\n"'),
        (1.0, "1"),
        (0.1, "0.1"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (-2.5, "-2.5"),
        (True, "true"),
        (b"hi", '"aGk="'),
        (Color.RED, '"red"'),
        ({1: "x"}, '{"1":"x"}'),
    ],
)
def test_to_json(value: object, expected: str) -> None:
    assert to_json(value) == expected


def test_to_json_options() -> None:
    assert to_json({"b": "<x>", "a": 1}, sort_keys=True, escape_html=True) == (
        '{"a":1,"b":"\\u003cx\\u003e"}'
    )
    assert to_json({"a": [1, {}], "b": []}, indent=2) == (
        '{\n  "a": [\n    1,\n    {}\n  ],\n  "b": []\n}'
    )
    assert to_json(Container("w", 1)) == '{"Name":"w","Pid":1,"Labels":{}}'
    assert to_json({"f": lambda: 1, "a": 1}) == '{"a":1}'
    with pytest.raises(ValueError):
        to_json(float("inf"))


# --------------------------------------------------------------------------- API, speed


def test_module_render_and_template_reuse() -> None:
    assert render("{{.A}}", {"A": 1}) == "1"
    t = Template("{{.A}}-{{.B}}")
    assert [t.render({"A": i, "B": i * 2}) for i in range(3)] == ["0-0", "1-2", "2-4"]
    assert t.source == "{{.A}}-{{.B}}"
    assert "Template(" in repr(t)


def test_header_rendering() -> None:
    t = Template(
        '{{.Repository}}:{{.Tag}}\t{{upper .ID}}\t{{printf "%-6s" .Size}}|{{index .Labels "x"}}'
    )
    headers = t.render_headers(lambda path: ".".join(path).upper())
    assert headers == "REPOSITORY:TAG\tID\tSIZE  |LABELS"
    nested = Template("{{.State.Status}} {{range .Ports}}{{.Public}}{{end}} {{json .}}")
    assert nested.render_headers(lambda path: "/".join(path)) == "State/Status Ports/Public "


def test_renders_1000_rows_quickly() -> None:
    rows = [
        {"Repository": f"repo{i}", "Tag": "latest", "ID": f"{i:012x}", "Labels": {"a": "b"}}
        for i in range(1000)
    ]
    t = Template(
        '{{.Repository}}:{{.Tag}}\t{{.ID}}\t{{index .Labels "a"}}\t{{if eq .Tag "latest"}}L{{end}}'
    )
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        out = [t.render(row) for row in rows]
        best = min(best, time.perf_counter() - start)
    assert out[1] == "repo1:latest\t000000000001\tb\tL"
    assert best < 0.05


# --------------------------------------------------------------------------- properties


@given(st.text().filter(lambda s: "{{" not in s))
def test_plain_text_renders_unchanged(text: str) -> None:
    assert render(text, {"A": 1}) == text


@given(st.text())
def test_dot_string_renders_unchanged(text: str) -> None:
    assert Template("{{.}}").render(text) == text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _same(a: object, b: object) -> bool:
    """Equal, treating numbers by value: Go writes 1e16 as 10000000000000000."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@given(json_values)
def test_to_json_round_trips(value: object) -> None:
    assert _same(json.loads(to_json(value)), value)
    assert _same(json.loads(to_json(value, indent=4, escape_html=True, sort_keys=True)), value)


@given(st.integers() | st.floats(allow_nan=False))
def test_printf_v_matches_print(value: object) -> None:
    assert sprintf("%v", value) == format_value(value)
