"""A directory that a later layer replaces with a file or a link is gone with everything under
it: the engine writes no whiteout for that (the overlay rule), so the layer readers must see
it themselves. Real images on the engine."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pytest_imagecheck.checks.secrets import assert_no_secrets
from pytest_imagecheck.cuda import read_cuda_facts
from pytest_imagecheck.engine import Engine
from pytest_imagecheck.layers import final_filesystem

SITE = "/usr/lib/python3/dist-packages"

RECIPE = """FROM {busybox}
RUN mkdir -p /usr/local/cuda /usr/local/cuda-13.0 /opt/d /opt/e {site}/torch \\
 && echo '{{"cuda": {{"version": "12.0.1"}}}}' > /usr/local/cuda/version.json \\
 && echo '{{"cuda": {{"version": "13.0.96"}}}}' > /usr/local/cuda-13.0/version.json \\
 && printf "__version__ = '2.5.1+cu121'\\ncuda = '12.1'\\n" > {site}/torch/version.py \\
 && echo "DB_PASSWORD=Zq8vLw3pXr7Tn2Kd" > /opt/d/.env \\
 && echo "API_TOKEN=Hk4mQw9sLp2Vx7Rb" > /opt/e/.env
RUN rm -rf /usr/local/cuda && ln -s /usr/local/cuda-13.0 /usr/local/cuda \\
 && rm -rf /opt/d && echo replaced > /opt/d \\
 && rm -rf /opt/e && mkdir /opt/e && echo new > /opt/e/other \\
 && rm -rf {site}/torch && echo notadir > {site}/torch
"""


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, "tests-replaced-directories")


@pytest.fixture(scope="module")
def tag(build_image: Callable[..., str], busybox: str) -> str:
    return build_image(RECIPE.format(busybox=busybox, site=SITE))


def test_files_under_a_replaced_directory_are_not_in_the_final_filesystem(
    engine: Engine, tag: str
) -> None:
    live = {
        entry.path: entry.kind for entry, _ in final_filesystem(engine.image(tag).layer_contents())
    }
    assert live["/usr/local/cuda"] == "symlink"
    assert live["/opt/d"] == "file"
    assert live[f"{SITE}/torch"] == "file"
    assert "/usr/local/cuda/version.json" not in live
    assert f"{SITE}/torch/version.py" not in live
    assert "/opt/d/.env" not in live
    assert "/opt/e/.env" not in live  # deleted with a whiteout of the directory
    assert live["/opt/e/other"] == "file"


def test_cuda_facts_ignore_version_files_under_a_replaced_directory(
    engine: Engine, tag: str
) -> None:
    facts = read_cuda_facts(engine.image(tag))
    assert facts.image_cuda is not None
    assert facts.image_cuda.version == "13.0.96"
    assert facts.torch is None


def test_a_secret_under_a_replaced_directory_is_still_in_its_layer(
    engine: Engine, tag: str
) -> None:
    with pytest.raises(AssertionError) as failure:
        assert_no_secrets(engine.image(tag))
    message = str(failure.value)
    d_line = next(line for line in message.splitlines() if "file:/opt/d/.env" in line)
    e_line = next(line for line in message.splitlines() if "file:/opt/e/.env" in line)
    assert "replaced in layer" in d_line and "still in the image" in d_line
    assert "deleted in layer" in e_line and "still in the image" in e_line
