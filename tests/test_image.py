"""Facts about the image under test, read from a real image on the engine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pytest_imagecheck.checks.structure import assert_file
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.errors import ImageCheckError, ImageNotFound


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-image")


def test_config_facts_are_plain_attributes(engine: Engine, sample_image: str) -> None:
    image = engine.image(sample_image)
    assert image.ref == sample_image
    assert image.id.startswith("sha256:")
    assert sample_image in image.tags
    assert image.user == "svc"
    assert image.env["APP_ENV"] == "prod"
    assert image.env["GREETING"] == "hello world"
    assert image.labels == {"org.opencontainers.image.title": "sample"}
    assert image.exposed_ports == ["8080/tcp"]
    assert image.entrypoint == ["httpd", "-f", "-vv", "-p", "8080", "-h", "/srv/www"]
    assert image.cmd is None
    assert image.workdir == "/srv"
    assert image.architecture == "amd64"
    assert image.os == "linux"
    assert image.attrs["Config"]["User"] == "svc"


def test_healthcheck_durations_are_timedeltas(engine: Engine, sample_image: str) -> None:
    health = engine.image(sample_image).healthcheck
    assert health is not None
    assert health.interval == timedelta(seconds=2)
    assert health.timeout == timedelta(seconds=2)
    assert health.start_period == timedelta(seconds=1)
    assert health.retries == 2
    assert health.test[0] == "CMD-SHELL"
    assert "http://127.0.0.1:8080/" in health.command
    assert health.defaults == frozenset()


def test_healthcheck_defaults_are_filled_in_and_named(engine: Engine, build_image, busybox) -> None:
    health = engine.image(build_image(f"FROM {busybox}\nHEALTHCHECK CMD true\n")).healthcheck
    assert health is not None
    assert health.interval == timedelta(seconds=30)
    assert health.retries == 3
    assert health.defaults == {"interval", "timeout", "start_period", "retries"}


def test_healthcheck_none_is_none_and_flagged(engine: Engine, build_image, busybox) -> None:
    image = engine.image(build_image(f"FROM {busybox}\nHEALTHCHECK NONE\n"))
    assert image.healthcheck is None
    assert image.healthcheck_disabled


def test_size_and_layers_in_build_order(engine: Engine, sample_image: str) -> None:
    image = engine.image(sample_image)
    assert image.size > 1_000_000  # the static busybox alone is about 2 MB
    assert image.layers[0].instruction.startswith("COPY")
    assert image.layers[0].size > 1_000_000
    assert image.layers[-1].instruction.startswith("ENTRYPOINT")
    assert sum(layer.size for layer in image.layers) == image.size
    assert len(image.diff_ids) >= 3


def test_read_file_works_without_a_shell_or_running_the_entrypoint(
    engine: Engine, sample_image: str, client
) -> None:
    image = engine.image(sample_image)
    assert b"svc:x:1000:1000" in image.read_file("/etc/passwd")
    assert image.read_file("/srv/www/index.html") == b"<h1>sample</h1>\n"
    with pytest.raises(FileNotFoundError, match="/nope does not exist in imagecheck-test/sample"):
        image.read_file("/nope")
    assert not client.api.containers(
        all=True, filters={"label": "pytest-imagecheck.session=tests-image"}
    )


def test_read_file_of_a_large_directory_says_so_and_leaves_no_container(
    engine: Engine, debian: str, client
) -> None:
    # /usr of a Debian root is far more than the socket buffers hold: an archive left open
    # after its first entry keeps the engine writing, and removing the container waits on it.
    with pytest.raises(IsADirectoryError, match=r"/usr in .* is not a regular file"):
        engine.image(debian).read_file("/usr")
    assert not client.api.containers(
        all=True, filters={"label": "pytest-imagecheck.session=tests-image"}
    )


def test_a_container_whose_large_directory_was_read_as_a_file_is_removed(
    engine: Engine, debian: str, client
) -> None:
    container = engine.run(engine.image(debian), entrypoint=["sleep", "600"], ports=[])
    entry, _ = container.archive_entry("/usr")
    assert entry.isdir()
    # The error's traceback keeps the reading frame alive while the container is removed.
    with pytest.raises(IsADirectoryError, match=r"/usr in .* is not a regular file") as failed:
        container.read_file("/usr")
    engine.remove(container)
    assert failed.value is not None
    assert not client.api.containers(all=True, filters={"id": container.id})


def test_read_file_follows_symlinks(engine: Engine, sample_image: str) -> None:
    # busybox --install -s makes /bin/sh a link to /bin/busybox
    assert engine.image(sample_image).read_file("/bin/sh")[:4] == b"\x7fELF"


def test_missing_image_is_a_clear_error(engine: Engine) -> None:
    with pytest.raises(ImageNotFound, match="'imagecheck-test/nope:0' not found on the engine"):
        engine.image("imagecheck-test/nope:0")


def test_image_by_id_and_digest_free_reference(engine: Engine, sample_image: str) -> None:
    image = engine.image(sample_image)
    assert engine.image(image.short_id).id == image.id
    assert image.repo_digests == []
    assert image.digest is None


@pytest.fixture(scope="module")
def odd_paths(build_image, busybox: str) -> str:
    """A file, and two symbolic links that point at each other."""
    return build_image(
        f"FROM {busybox}\nRUN mkdir /app && echo hi > /app/f && ln -s /loopB /loopA"
        " && ln -s /loopA /loopB\n"
    )


def test_a_path_through_a_file_does_not_exist(engine: Engine, odd_paths: str) -> None:
    image = engine.image(odd_paths)
    with pytest.raises(FileNotFoundError, match=r"/app/f/x does not exist in .*: a part of it"):
        image.read_file("/app/f/x")
    container = engine.run(image, entrypoint=["sleep", "600"], ports=[])
    try:
        assert_file(container, "/app/f/x", exists=False)
        assert_file(container, "/app/f/", exists=False)
    finally:
        engine.remove(container)


def test_a_symlink_loop_and_a_relative_path_are_one_line_errors(
    engine: Engine, odd_paths: str
) -> None:
    image = engine.image(odd_paths)
    with pytest.raises(ImageCheckError, match="its symbolic links form a loop"):
        image.read_file("/loopA")
    for path in ("etc/passwd", ""):
        with pytest.raises(ImageCheckError, match="must be absolute"):
            image.read_file(path)
