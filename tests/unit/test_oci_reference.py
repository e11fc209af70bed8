"""Docker reference grammar and normalisation."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from moorage.errors import InvalidArgument, InvalidReference
from moorage.oci.digest import Digest
from moorage.oci.reference import Reference, looks_like_id, parse_reference

H = hashlib.sha256(b"ref").hexdigest()
H512 = hashlib.sha512(b"ref").hexdigest()
DG = f"sha256:{H}"


# (input, full form, familiar form, domain, path, tag, digest)
VALID: list[tuple[str, str, str, str, str, str | None, str | None]] = [
    ("busybox", "docker.io/library/busybox", "busybox", "docker.io", "library/busybox", None, None),
    (
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "busybox:latest",
        "docker.io",
        "library/busybox",
        "latest",
        None,
    ),
    (
        "ubuntu:22.04",
        "docker.io/library/ubuntu:22.04",
        "ubuntu:22.04",
        "docker.io",
        "library/ubuntu",
        "22.04",
        None,
    ),
    ("user/app", "docker.io/user/app", "user/app", "docker.io", "user/app", None, None),
    ("user/app:1", "docker.io/user/app:1", "user/app:1", "docker.io", "user/app", "1", None),
    (
        "library/nginx:alpine",
        "docker.io/library/nginx:alpine",
        "nginx:alpine",
        "docker.io",
        "library/nginx",
        "alpine",
        None,
    ),
    (
        "docker.io/busybox",
        "docker.io/library/busybox",
        "busybox",
        "docker.io",
        "library/busybox",
        None,
        None,
    ),
    (
        "docker.io/library/busybox:1.36",
        "docker.io/library/busybox:1.36",
        "busybox:1.36",
        "docker.io",
        "library/busybox",
        "1.36",
        None,
    ),
    (
        "index.docker.io/busybox",
        "docker.io/library/busybox",
        "busybox",
        "docker.io",
        "library/busybox",
        None,
        None,
    ),
    (
        "index.docker.io/user/app:v2",
        "docker.io/user/app:v2",
        "user/app:v2",
        "docker.io",
        "user/app",
        "v2",
        None,
    ),
    ("localhost/app", "localhost/app", "localhost/app", "localhost", "app", None, None),
    (
        "localhost:5000/x:1",
        "localhost:5000/x:1",
        "localhost:5000/x:1",
        "localhost:5000",
        "x",
        "1",
        None,
    ),
    (
        "host:5000/a/b:tag",
        "host:5000/a/b:tag",
        "host:5000/a/b:tag",
        "host:5000",
        "a/b",
        "tag",
        None,
    ),
    (
        "ghcr.io/owner/repo/sub:sha-abc",
        "ghcr.io/owner/repo/sub:sha-abc",
        "ghcr.io/owner/repo/sub:sha-abc",
        "ghcr.io",
        "owner/repo/sub",
        "sha-abc",
        None,
    ),
    (
        "quay.io/coreos/etcd:v3.5.0",
        "quay.io/coreos/etcd:v3.5.0",
        "quay.io/coreos/etcd:v3.5.0",
        "quay.io",
        "coreos/etcd",
        "v3.5.0",
        None,
    ),
    (
        "registry.example.com:443/team/svc",
        "registry.example.com:443/team/svc",
        "registry.example.com:443/team/svc",
        "registry.example.com:443",
        "team/svc",
        None,
        None,
    ),
    (
        "10.0.0.1:5000/img",
        "10.0.0.1:5000/img",
        "10.0.0.1:5000/img",
        "10.0.0.1:5000",
        "img",
        None,
        None,
    ),
    (
        "[::1]:5000/img:t",
        "[::1]:5000/img:t",
        "[::1]:5000/img:t",
        "[::1]:5000",
        "img",
        "t",
        None,
    ),
    (
        "[2001:db8::1]/img",
        "[2001:db8::1]/img",
        "[2001:db8::1]/img",
        "[2001:db8::1]",
        "img",
        None,
        None,
    ),
    (
        f"busybox@{DG}",
        f"docker.io/library/busybox@{DG}",
        f"busybox@{DG}",
        "docker.io",
        "library/busybox",
        None,
        DG,
    ),
    (
        f"busybox:1.36@{DG}",
        f"docker.io/library/busybox:1.36@{DG}",
        f"busybox:1.36@{DG}",
        "docker.io",
        "library/busybox",
        "1.36",
        DG,
    ),
    (
        f"ghcr.io/a/b@sha512:{H512}",
        f"ghcr.io/a/b@sha512:{H512}",
        f"ghcr.io/a/b@sha512:{H512}",
        "ghcr.io",
        "a/b",
        None,
        f"sha512:{H512}",
    ),
    ("a", "docker.io/library/a", "a", "docker.io", "library/a", None, None),
    ("a/b/c/d/e", "docker.io/a/b/c/d/e", "a/b/c/d/e", "docker.io", "a/b/c/d/e", None, None),
    (
        "foo_bar/baz__qux",
        "docker.io/foo_bar/baz__qux",
        "foo_bar/baz__qux",
        "docker.io",
        "foo_bar/baz__qux",
        None,
        None,
    ),
    (
        "my-app---x/y",
        "docker.io/my-app---x/y",
        "my-app---x/y",
        "docker.io",
        "my-app---x/y",
        None,
        None,
    ),
    (
        "img:_under",
        "docker.io/library/img:_under",
        "img:_under",
        "docker.io",
        "library/img",
        "_under",
        None,
    ),
    (
        "img:UPPER.case-Tag_1",
        "docker.io/library/img:UPPER.case-Tag_1",
        "img:UPPER.case-Tag_1",
        "docker.io",
        "library/img",
        "UPPER.case-Tag_1",
        None,
    ),
    (
        "img:" + "t" * 128,
        "docker.io/library/img:" + "t" * 128,
        "img:" + "t" * 128,
        "docker.io",
        "library/img",
        "t" * 128,
        None,
    ),
    # a port-looking suffix without a slash is a tag, as in Docker
    (
        "localhost:5000",
        "docker.io/library/localhost:5000",
        "localhost:5000",
        "docker.io",
        "library/localhost",
        "5000",
        None,
    ),
    # an upper-case first component is a domain (Docker's rule), the path stays lower case
    ("Foo/bar", "Foo/bar", "Foo/bar", "Foo", "bar", None, None),
    (
        "EXAMPLE.com/x/y:z",
        "EXAMPLE.com/x/y:z",
        "EXAMPLE.com/x/y:z",
        "EXAMPLE.com",
        "x/y",
        "z",
        None,
    ),
    # library with deeper paths is not an official image
    ("library/a/b", "docker.io/library/a/b", "library/a/b", "docker.io", "library/a/b", None, None),
    # a docker.io path whose first component looks like a domain keeps its domain
    (
        "docker.io/foo.bar/x",
        "docker.io/foo.bar/x",
        "docker.io/foo.bar/x",
        "docker.io",
        "foo.bar/x",
        None,
        None,
    ),
    (
        "docker.io/localhost/x",
        "docker.io/localhost/x",
        "docker.io/localhost/x",
        "docker.io",
        "localhost/x",
        None,
        None,
    ),
    # a bare 64-hex *with* a tag is a name like any other
    (
        H[:63] + ":1",
        f"docker.io/library/{H[:63]}:1",
        f"{H[:63]}:1",
        "docker.io",
        f"library/{H[:63]}",
        "1",
        None,
    ),
    # sha256:<hex> parses as image "sha256" tagged <hex>: callers check looks_like_id() first
    (
        f"sha256:{H}",
        f"docker.io/library/sha256:{H}",
        f"sha256:{H}",
        "docker.io",
        "library/sha256",
        H,
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "full", "familiar", "domain", "path", "tag", "digest"),
    VALID,
    ids=[v[0][:60] for v in VALID],
)
def test_parse_valid(
    text: str,
    full: str,
    familiar: str,
    domain: str,
    path: str,
    tag: str | None,
    digest: str | None,
) -> None:
    ref = parse_reference(text)
    assert ref.domain == domain
    assert ref.path == path
    assert ref.tag == tag
    assert ref.digest == (Digest.parse(digest) if digest else None)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert ref.name == f"{domain}/{path}"
    assert parse_reference(full) == ref
    assert parse_reference(familiar) == ref


# (input, expected message fragment)
INVALID: list[tuple[str, str]] = [
    ("", "invalid reference format"),
    ("Busybox", "repository name (library/Busybox) must be lowercase"),
    ("library/Busybox", "invalid reference format: repository name (library/Busybox) must be"),
    ("user/App:1", "repository name (user/App) must be lowercase"),
    ("localhost:5000/UPPER", "repository name (UPPER) must be lowercase"),
    (H, f"invalid repository name ({H}), cannot specify 64-byte hexadecimal strings"),
    ("busybox:", "invalid reference format"),
    ("busybox@", "invalid reference format"),
    (":latest", "invalid reference format"),
    ("@" + DG, "invalid reference format"),
    ("/busybox", "invalid reference format"),
    ("busybox/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a/b/", "invalid reference format"),
    ("-app", "invalid reference format"),
    ("app-", "invalid reference format"),
    ("a..b", "invalid reference format"),
    ("a___b", "invalid reference format"),
    ("_app", "invalid reference format"),
    ("app.", "invalid reference format"),
    ("busybox:-tag", "invalid reference format"),
    ("busybox:.tag", "invalid reference format"),
    ("busybox:tag!", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("busybox:a:b", "invalid reference format"),
    ("busybox:tàg", "invalid reference format"),
    ("bü/x", "invalid reference format"),
    ("a b", "invalid reference format"),
    ("busybox\n", "invalid reference format"),
    ("host:port/x", "invalid reference format"),
    ("-host.com/x", "invalid reference format"),
    ("host-.com/x", "invalid reference format"),
    ("host..com/x", "invalid reference format"),
    ("[::1/x", "invalid reference format"),
    ("busybox@sha256:abc", "invalid reference format"),
    (f"busybox@sha256:{H.upper()}", "invalid reference format"),
    (f"busybox@sha256:{H}0", "invalid reference format"),
    (f"busybox@md5:{H[:32]}", "unsupported digest algorithm"),
    (f"busybox@{DG}@{DG}", "invalid reference format"),
    (f"busybox@{DG}:tag", "invalid reference format"),
    ("a/" + "b" * 250, "repository name must not be more than 255 characters"),
    ("x" * 256, "repository name must not be more than 255 characters"),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=[i[0][:40] for i in INVALID])
def test_parse_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        parse_reference(text)
    assert message in str(exc.value)
    assert isinstance(exc.value, InvalidArgument)


def test_exact_docker_messages() -> None:
    with pytest.raises(InvalidReference) as exc:
        parse_reference("Busybox")
    assert str(exc.value) == (
        "invalid reference format: repository name (library/Busybox) must be lowercase"
    )
    with pytest.raises(InvalidReference) as exc:
        parse_reference("busybox:")
    assert str(exc.value) == "invalid reference format"


def test_name_length_limit_counts_domain() -> None:
    # 255 characters including "docker.io/" is fine, one more is not
    ok = "u/" + "a" * (255 - len("docker.io/u/"))
    assert len(parse_reference(ok).name) == 255
    with pytest.raises(InvalidReference):
        parse_reference(ok + "a")


@pytest.mark.parametrize(
    ("text", "with_default"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1", "docker.io/library/busybox:1"),
        (f"busybox@{DG}", f"docker.io/library/busybox@{DG}"),
        (f"busybox:1@{DG}", f"docker.io/library/busybox:1@{DG}"),
        ("localhost:5000/x", "localhost:5000/x:latest"),
    ],
)
def test_with_default_tag(text: str, with_default: str) -> None:
    ref = parse_reference(text)
    assert str(ref.with_default_tag()) == with_default
    assert ref.with_default_tag().with_default_tag() == ref.with_default_tag()


@pytest.mark.parametrize(
    ("text", "familiar_name"),
    [
        ("busybox:1", "busybox"),
        ("docker.io/library/busybox", "busybox"),
        ("user/app:1", "user/app"),
        ("localhost:5000/x:1", "localhost:5000/x"),
        ("ghcr.io/o/r", "ghcr.io/o/r"),
        (f"busybox@{DG}", "busybox"),
    ],
)
def test_familiar_name_and_repository(text: str, familiar_name: str) -> None:
    ref = parse_reference(text)
    assert ref.familiar_name == familiar_name
    assert ref.repository == familiar_name


def test_derived_references() -> None:
    ref = parse_reference(f"user/app:1@{DG}")
    assert str(ref.with_tag("2")) == "docker.io/user/app:2"
    assert str(ref.name_only()) == "docker.io/user/app"
    other = Digest.of(b"other")
    assert ref.with_digest(other).digest == other
    assert ref.with_digest(other).tag == "1"
    assert ref.is_docker_hub
    assert not parse_reference("ghcr.io/a/b").is_docker_hub
    with pytest.raises(InvalidReference):
        ref.with_tag("bad tag")


def test_reference_is_hashable_and_comparable() -> None:
    a = parse_reference("busybox")
    b = parse_reference("docker.io/library/busybox")
    assert a == b
    assert len({a, b}) == 1
    assert a != a.with_default_tag()


@pytest.mark.parametrize(
    ("domain", "path", "tag"),
    [
        ("docker.io", "Library/x", None),
        ("docker.io", "", None),
        ("bad domain", "x", None),
        ("docker.io", "x", "-bad"),
    ],
)
def test_direct_construction_validated(domain: str, path: str, tag: str | None) -> None:
    with pytest.raises(InvalidReference):
        Reference(domain, path, tag)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (H, True),
        (f"sha256:{H}", True),
        (H[:12], True),
        (H[:20], True),
        (f"sha256:{H[:12]}", True),
        (H[:11], False),
        (H + "0", False),
        (H.upper(), False),
        (f"sha512:{H}", False),
        ("busybox", False),
        ("deadbeefcafe", True),
        ("deadbeefcafg", False),
        ("", False),
        (f"{H[:12]}:latest", False),
    ],
)
def test_looks_like_id(text: str, expected: bool) -> None:
    assert looks_like_id(text) is expected


# --- properties -------------------------------------------------------------------------------

_path_component = st.from_regex(
    r"[a-z0-9]{1,8}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,8}){0,2}", fullmatch=True
)
_domain_component = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.just(""),
    st.sampled_from(["docker.io/", "index.docker.io/", "localhost/", "localhost:5000/"]),
    st.builds(
        lambda parts, port: ".".join(parts) + (f":{port}" if port is not None else "") + "/",
        st.lists(_domain_component, min_size=1, max_size=3),
        st.none() | st.integers(min_value=1, max_value=65535),
    ),
)
_tag = st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.none() | st.builds(lambda b: str(Digest.of(b)), st.binary(max_size=8))


@st.composite
def reference_strings(draw: st.DrawFn) -> str:
    s = draw(_domain) + "/".join(draw(st.lists(_path_component, min_size=1, max_size=4)))
    tag = draw(_tag)
    digest = draw(_digest)
    if tag is not None:
        s += f":{tag}"
    if digest is not None:
        s += f"@{digest}"
    return s


def _check_round_trip(ref: Reference) -> None:
    assert parse_reference(str(ref)) == ref
    assert parse_reference(ref.familiar()) == ref
    assert str(parse_reference(ref.familiar())) == str(ref)
    tagged = ref.with_default_tag()
    assert parse_reference(str(tagged)) == tagged


@given(reference_strings())
def test_property_generated_references_round_trip(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        assume(False)
        raise
    _check_round_trip(ref)


@given(st.text(alphabet="abcAB019._-:/@[]", max_size=40))
def test_property_any_parsed_text_round_trips(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    _check_round_trip(ref)
