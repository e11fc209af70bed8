"""format_list / format_inspect / render_table: the output of every --format flag."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.errors import InvalidArgument
from moorage.format import (
    TemplateError,
    derive_header,
    format_inspect,
    format_list,
    render_table,
    tabwrite,
)

IMAGES_TABLE = "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
IMAGE_HEADERS = {"ID": "IMAGE ID"}

ROWS = [
    {
        "Repository": "nginx",
        "Tag": "latest",
        "ID": "4dd97cefde62",
        "CreatedSince": "5 days ago",
        "Size": "72.9MB",
        "Digest": "<none>",
        "Labels": {"a": "1"},
    },
    {
        "Repository": "registry.example.com/team/app",
        "Tag": "v1.2.3",
        "ID": "b0f914b26cc1",
        "CreatedSince": "3 months ago",
        "Size": "556MB",
        "Digest": "<none>",
        "Labels": {},
    },
]


def images(fmt: str | None, rows: list[dict[str, object]] | None = None, **kw: object) -> str:
    return format_list(
        ROWS if rows is None else rows,
        fmt,
        default_table=IMAGES_TABLE,
        headers=IMAGE_HEADERS,
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- tables


DEFAULT_OUTPUT = (
    "REPOSITORY                      TAG       IMAGE ID       CREATED        SIZE\n"
    "nginx                           latest    4dd97cefde62   5 days ago     72.9MB\n"
    "registry.example.com/team/app   v1.2.3    b0f914b26cc1   3 months ago   556MB\n"
)


@pytest.mark.parametrize("fmt", [None, "", "table", "  table  "])
def test_default_table(fmt: str | None) -> None:
    assert images(fmt) == DEFAULT_OUTPUT


def test_default_table_with_real_tabs() -> None:
    out = format_list(
        ROWS,
        None,
        default_table="table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
        headers=IMAGE_HEADERS,
    )
    assert out == DEFAULT_OUTPUT


def test_table_columns_are_widest_cell_plus_three_but_at_least_ten() -> None:
    out = images("table {{.Repository}}\\t{{.Size}}")
    lines = out.splitlines()
    # REPOSITORY column: widest cell (29) + 3
    assert lines[1] == "nginx" + " " * (29 + 3 - 5) + "72.9MB"
    out = images("table {{.Tag}}\\t{{.Size}}")
    assert out.splitlines()[0] == "TAG       SIZE"  # 3 chars padded to the minimum width 10


def test_custom_table_headers() -> None:
    out = images("table {{.Repository}}:{{.Tag}}\\t{{upper .ID}}\\t{{json .Labels}}")
    assert out == (
        "REPOSITORY:TAG                         IMAGE ID       LABELS\n"
        'nginx:latest                           4DD97CEFDE62   {"a":"1"}\n'
        "registry.example.com/team/app:v1.2.3   B0F914B26CC1   {}\n"
    )


def test_table_header_derivation_and_mapping() -> None:
    rows = [{"CreatedAt": "now", "ImageID": "x", "Name": "n", "State": {"Status": "up"}}]
    out = format_list(
        rows,
        "table {{.CreatedAt}}\\t{{.ImageID}}\\t{{.Name}}\\t{{.State.Status}}",
        default_table="",
        headers={"Name": "CONTAINER NAME"},
    )
    assert out.splitlines()[0] == "CREATED AT   IMAGE ID   CONTAINER NAME   STATUS"


def test_table_header_dotted_path_override() -> None:
    rows = [{"State": {"Status": "up"}}]
    out = format_list(
        rows, "table {{.State.Status}}", default_table="", headers={"State.Status": "STATE"}
    )
    assert out == "STATE\nup\n"


def test_table_without_rows_prints_the_header() -> None:
    assert images(None, rows=[]) == ("REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n")


def test_table_has_no_trailing_whitespace() -> None:
    rows = [{"A": "x", "B": ""}, {"A": "longer value", "B": "b"}]
    out = format_list(rows, "table {{.A}}\\t{{.B}}", default_table="")
    assert out == "A              B\nx\nlonger value   b\n"
    assert all(line == line.rstrip() for line in out.splitlines())


def test_table_with_printf_and_pad_headers() -> None:
    rows = [{"Name": "web", "Size": 12}]
    out = format_list(rows, 'table {{printf "%-6s" .Name}}|{{pad .Size 1 1}}', default_table="")
    assert out == "NAME  | SIZE \nweb   | 12 \n".replace(" \n", "\n")


def test_table_with_range_and_conditionals() -> None:
    rows = [{"Name": "a", "Ports": [{"P": 80}, {"P": 443}], "Up": True}]
    out = format_list(
        rows,
        "table {{.Name}}\\t{{range .Ports}}{{.P}} {{end}}\\t{{if .Up}}yes{{end}}",
        default_table="",
    )
    # as docker: the header row runs the same template with headers for values, so the
    # range runs once on the header and {{if}} sees a non-empty (true) header
    assert out == "NAME      P         yes\na         80 443    yes\n"


# --------------------------------------------------------------------------- raw templates


def test_raw_template_one_line_per_row() -> None:
    assert (
        images("{{.Repository}}:{{.Tag}}") == "nginx:latest\nregistry.example.com/team/app:v1.2.3\n"
    )


def test_raw_template_backslash_t_and_n_escapes() -> None:
    assert images("{{.Tag}}\\t{{.Size}}") == "latest\t72.9MB\nv1.2.3\t556MB\n"
    assert images("{{.Tag}}\\n{{.Size}}") == "latest\n72.9MB\nv1.2.3\n556MB\n"


def test_raw_template_is_trimmed_of_surrounding_spaces() -> None:
    assert images("  {{.Tag}}  ") == "latest\nv1.2.3\n"


def test_raw_template_no_rows_is_empty() -> None:
    assert images("{{.ID}}", rows=[]) == ""


def test_docker_style_templates() -> None:
    assert images('{{index .Labels "a"}}|') == "1|\n|\n"
    assert images("{{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}") == "a=1\n\n"
    assert images('{{if eq .Tag "latest"}}L{{else}}-{{end}}') == "L\n-\n"


# --------------------------------------------------------------------------- json lines


def test_json_lines() -> None:
    out = images("json")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        '{"CreatedSince":"5 days ago","Digest":"\\u003cnone\\u003e","ID":"4dd97cefde62",'
        '"Labels":{"a":"1"},"Repository":"nginx","Size":"72.9MB","Tag":"latest"}'
    )
    assert [json.loads(line) for line in lines] == ROWS
    assert out.endswith("\n")


def test_json_lines_match_compact_json_dumps_for_plain_rows() -> None:
    rows = [{"A": 1, "B": [1, 2], "C": None, "D": "x"}]
    assert images("json", rows=rows) == json.dumps(rows[0], separators=(",", ":")) + "\n"


def test_json_lines_keep_non_ascii() -> None:
    assert images("json", rows=[{"N": "café"}]) == '{"N":"café"}\n'


def test_json_no_rows() -> None:
    assert images("json", rows=[]) == ""


def test_json_template_function_in_raw_format() -> None:
    assert images("{{json .Labels}}") == '{"a":"1"}\n{}\n'


# --------------------------------------------------------------------------- quiet


def test_quiet() -> None:
    assert images(None, quiet=True, quiet_field="ID") == "4dd97cefde62\nb0f914b26cc1\n"
    assert images("{{.Tag}}", quiet=True) == "4dd97cefde62\nb0f914b26cc1\n"  # ID by default
    assert images(None, quiet=True, quiet_field="Repository").splitlines()[0] == "nginx"
    assert images(None, rows=[], quiet=True) == ""


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "fmt",
    ["{{.Foo", "table {{.Foo", "{{nope .ID}}", "table {{.ID}}\\t{{nope}}"],
)
def test_bad_formats_raise_template_parsing_error(fmt: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        images(fmt)
    assert str(exc.value).startswith("template parsing error: ")


def test_execution_errors_raise() -> None:
    with pytest.raises(TemplateError, match="error calling index"):
        images("{{index .Tag 99}}")


# --------------------------------------------------------------------------- inspect


OBJECTS = [
    {
        "Id": "sha256:abc",
        "RepoTags": ["nginx:latest"],
        "Config": {"Labels": {"a.b": "x"}, "Env": [], "Cmd": None, "Entry": "<&>"},
        "Size": 1234,
        "Name": "café",
    },
    {"Id": "sha256:def", "RepoTags": [], "Config": {"Labels": {}}, "Size": 0},
]


@pytest.mark.parametrize("fmt", [None, "", "json"])
def test_inspect_default_is_indented_json_array(fmt: str | None) -> None:
    out = format_inspect(OBJECTS, fmt)
    assert out.endswith("]\n")
    assert json.loads(out) == OBJECTS
    assert out.startswith('[\n    {\n        "Id": "sha256:abc",\n        "RepoTags": [\n')
    assert '"Env": [],' in out
    assert '"Entry": "\\u003c\\u0026\\u003e"' in out  # Go's encoding/json HTML escaping
    assert '"Name": "café"' in out


def test_inspect_matches_json_dumps_for_plain_objects() -> None:
    objs = [{"Id": "x", "List": [1, 2], "Map": {"k": None}, "Empty": {}}]
    assert format_inspect(objs, None) == json.dumps(objs, indent=4) + "\n"


def test_inspect_empty() -> None:
    assert format_inspect([], None) == "[]\n"
    assert format_inspect([], "{{.Id}}") == ""


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{{.Id}}", "sha256:abc\nsha256:def\n"),
        ("{{json .Config.Labels}}", '{"a.b":"x"}\n{}\n'),
        ('{{index .Config.Labels "a.b"}}', "x\n\n"),
        ("{{range .RepoTags}}{{.}} {{end}}", "nginx:latest \n\n"),
        ("{{.Size}}", "1234\n0\n"),
        ("{{.Config.Cmd}}", "<nil>\n<no value>\n"),
        ("{{.Id}}\\t{{.Size}}", "sha256:abc\\t1234\nsha256:def\\t0\n"),  # no \t translation
    ],
)
def test_inspect_template(fmt: str, expected: str) -> None:
    assert format_inspect(OBJECTS, fmt) == expected


def test_inspect_template_errors() -> None:
    with pytest.raises(
        TemplateError, match=r"^template parsing error: template: :1: unclosed action$"
    ):
        format_inspect(OBJECTS, "{{.Id")
    with pytest.raises(TemplateError, match="can't evaluate field X in type string"):
        format_inspect(OBJECTS, "{{.Id.X}}")


# ------------------------------------------------------------------- render_table / tabwrite


def test_render_table() -> None:
    out = render_table(
        ["NAME", "DRIVER", "SCOPE"],
        [["bridge", "bridge", "local"], ["a-much-longer-name", "x", "y"]],
    )
    assert out == (
        "NAME                 DRIVER    SCOPE\n"
        "bridge               bridge    local\n"
        "a-much-longer-name   x         y\n"
    )


def test_render_table_custom_widths() -> None:
    out = render_table(["A", "B"], [["xx", "y"]], minwidth=0, padding=1)
    assert out == "A  B\nxx y\n"


def test_render_table_empty() -> None:
    assert render_table([], []) == ""
    assert render_table(["A", "B"], []) == "A         B\n"


def test_tabwrite_column_blocks_are_contiguous() -> None:
    # Go's tabwriter: a column is aligned only across consecutive lines that have it.
    text = "aaaa\tbbb\td\naa\tb\tdd\na\naa\tcccc\teee\n"
    assert tabwrite(text, minwidth=0, padding=1) == ("aaaa bbb d\naa   b   dd\na\naa cccc eee\n")


def test_tabwrite_wide_characters() -> None:
    out = tabwrite("名前\tx\nab\ty\n", minwidth=0, padding=1)
    assert out == "名前 x\nab   y\n"


@pytest.mark.parametrize(
    ("field", "header"),
    [
        ("Repository", "REPOSITORY"),
        ("CreatedAt", "CREATED AT"),
        ("ImageID", "IMAGE ID"),
        ("ID", "ID"),
        ("HTTPPort", "HTTP PORT"),
        ("LocalVolumes", "LOCAL VOLUMES"),
        ("IPv4Address", "IPV4 ADDRESS"),
        ("Size", "SIZE"),
        ("snake_case", "SNAKE CASE"),
    ],
)
def test_derive_header(field: str, header: str) -> None:
    assert derive_header(field) == header


def test_builtin_header_overrides() -> None:
    rows = [{"CreatedSince": "1 day ago", "RunningFor": "2 hours ago"}]
    out = format_list(rows, "table {{.CreatedSince}}\\t{{.RunningFor}}", default_table="")
    assert out.splitlines()[0] == "CREATED     CREATED"


@given(
    st.lists(
        st.lists(st.text(alphabet="abcxyz ", max_size=12), min_size=3, max_size=3),
        max_size=8,
    )
)
def test_render_table_aligns_every_column(rows: list[list[str]]) -> None:
    rows = [[cell.strip() or "-" for cell in row] for row in rows]
    out = render_table(["A", "B", "C"], rows)
    lines = out.splitlines()
    assert len(lines) == len(rows) + 1
    widths = [max([10, *(len(r[i]) + 3 for r in [["A", "B", "C"], *rows])]) for i in range(2)]
    for line, cells in zip(lines, [["A", "B", "C"], *rows], strict=True):
        assert line[widths[0] : widths[0] + len(cells[1])] == cells[1]
        assert line[widths[0] + widths[1] :] == cells[2]
