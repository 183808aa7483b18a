"""assert_cuda_torch_match on images carrying real CUDA and torch wheels, and its rules.

The images are the Debian test base plus real wheels unzipped into site-packages
(tests/wheels.py, tests/images/cuda/Dockerfile): nvcc 13.0.88 and the CUDA 13.0.96 runtime,
torch 2.14.1 built for CUDA 13.0, torch 2.13.0+cpu, and CUDA 12.9 pieces (ptxas, cudart).
Each is built once and kept on the engine, like the other test bases; the 555 MB torch
2.14.1 makes the tests that need it slow.
"""

from __future__ import annotations

import pynvml
import pytest

from pytest_imagecheck.checks.cuda import (
    CudaCompatibilityWarning,
    assert_cuda_torch_match,
    compiler_findings,
    driver_findings,
    nvidia_requirements,
    requirement_holds,
    runtime_findings,
    static_findings,
    version_matches,
)
from pytest_imagecheck.cuda import (
    KEEPALIVE,
    Compiler,
    CudaFacts,
    Found,
    TorchBuild,
    parse_torch_version,
    probe_torch_runtime,
    read_cuda_facts,
)
from pytest_imagecheck.engine import LABEL_SESSION, Engine, new_session_id
from pytest_imagecheck.errors import GpuUnavailable, ImageCheckError
from pytest_imagecheck.evidence import collecting
from pytest_imagecheck.gpu import GpuDevice, GpuHost
from tests.test_gpu import GIB, FakeGpu, nvml_loads, stub_nvml
from tests.wheels import build_with_wheels, resolve

CUDA13 = ["nvidia-cuda-nvcc==13.0.88", "nvidia-cuda-runtime==13.0.96"]
CUDA12_PIECES = ["nvidia-cuda-nvcc-cu12==12.9.86", "nvidia-cuda-runtime-cu12==12.9.79"]
TORCH_CU130 = "torch==2.14.1"
TORCH_CPU = "torch==2.13.0+cpu"
SITE = "/usr/local/lib/python3.11/dist-packages"
VENV_SITE = "/opt/venv/lib/python3.11/site-packages"
REQUIRE = "cuda>=13.0 brand=tesla,driver>=535,driver<536 brand=tesla,driver>=570,driver<571"
TESLA_T4 = FakeGpu("Tesla T4", 16 * GIB, pynvml.NVML_BRAND_TESLA, (7, 5))
RTX_4090 = FakeGpu("NVIDIA GeForce RTX 4090", 24 * GIB, pynvml.NVML_BRAND_GEFORCE, (8, 9))


@pytest.fixture(scope="module")
def engine(client) -> Engine:
    return Engine(client, f"tests-cuda-{new_session_id()}")


@pytest.fixture(scope="module")
def cuda13(client, debian) -> str:
    """nvcc 13.0.88 and the CUDA 13.0.96 runtime, no torch."""
    return build_with_wheels(client, debian, CUDA13, name="cuda13")


@pytest.fixture(scope="module")
def torch_cu130(client, cuda13) -> str:
    """cuda13 plus torch 2.14.1+cu130: the matching pair."""
    return build_with_wheels(client, cuda13, [TORCH_CU130], name="cuda13-torch2.14.1")


@pytest.fixture(scope="module")
def cuda12_pieces(client, torch_cu130) -> str:
    """torch_cu130 plus the CUDA 12.9 runtime and ptxas (nvidia-cuda-nvcc-cu12 has no nvcc)."""
    return build_with_wheels(client, torch_cu130, CUDA12_PIECES, name="cuda12-pieces")


@pytest.fixture(scope="module")
def torch_cpu(client, debian) -> str:
    """torch 2.13.0+cpu with everything it imports: no CUDA anywhere."""
    return build_with_wheels(client, debian, resolve(TORCH_CPU), name="torch2.13.0-cpu")


@pytest.fixture(scope="module")
def torch_cpu_with_cudart(client, debian) -> str:
    """nvcc 13.0.88, the CUDA 13.0.96 runtime and torch 2.13.0+cpu in a venv's site-packages."""
    wheels = [*CUDA13, TORCH_CPU]
    return build_with_wheels(
        client, debian, wheels, site_packages=VENV_SITE, name="cuda13-torch2.13.0-cpu-venv"
    )


@pytest.fixture(scope="module")
def cuda13_facts(engine, cuda13) -> CudaFacts:
    return read_cuda_facts(engine.image(cuda13))


@pytest.fixture(scope="module")
def cpu_facts(engine, torch_cpu) -> CudaFacts:
    return read_cuda_facts(engine.image(torch_cpu))


@pytest.fixture(scope="module")
def cu130_facts(engine, torch_cu130) -> CudaFacts:
    return read_cuda_facts(engine.image(torch_cu130))


@pytest.fixture(scope="module")
def cuda12_facts(engine, cuda12_pieces) -> CudaFacts:
    return read_cuda_facts(engine.image(cuda12_pieces))


def _check(target, **kwargs) -> dict[str, object]:
    """Run the check and return the evidence it recorded."""
    with collecting() as evidence:
        assert_cuda_torch_match(target, **kwargs)
    return evidence[0].facts


# -- torch/version.py, read with ast ----------------------------------------------------------


def test_version_py_of_older_torch_is_parsed() -> None:
    build = parse_torch_version(
        "__version__ = '1.8.1+cu111'\ndebug = False\ncuda = '11.1'\n"
        "git_version = '56b43f4fec1f76953f15a627694d4bba34588969'\nhip = None\n"
    )
    assert (build.version, build.cuda, build.hip, build.build) == (
        "1.8.1+cu111",
        "11.1",
        None,
        "cuda",
    )


def test_version_py_with_type_annotations_is_parsed() -> None:
    build = parse_torch_version(
        "from typing import Optional\n\n__version__ = '2.3.0+rocm6.0'\n"
        "cuda: Optional[str] = None\nhip: Optional[str] = '6.0.32830'\n"
    )
    assert (build.version, build.cuda, build.hip, build.build) == (
        "2.3.0+rocm6.0",
        None,
        "6.0.32830",
        "rocm",
    )


def test_version_py_without_version_is_an_error() -> None:
    with pytest.raises(ImageCheckError, match=r"/x/torch/version.py sets no __version__"):
        parse_torch_version("cuda = '12.1'\n", path="/x/torch/version.py")


# -- rules on facts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        ("2.14", "2.14.1+cu130", True),
        ("2.14.1", "2.14.1+cu130", True),
        ("2.14.1+cu130", "2.14.1+cu130", True),
        ("2.14.1+cu128", "2.14.1+cu130", False),
        ("2.1", "2.14.1", False),
        ("13", "13.0.96", True),
        ("13.0", "13.0", True),
        ("13.0.0", "13.0", True),
        ("12.9", "13.0.96", False),
    ],
)
def test_expectations_are_versions_or_prefixes(expected, actual, matches) -> None:
    assert version_matches(expected, actual) is matches


def test_bad_expectation_is_a_one_line_error() -> None:
    facts = CudaFacts(ref="x", env={})
    with pytest.raises(ImageCheckError, match=r'bad torch expectation "latest": use a version'):
        static_findings(facts, torch="latest")


def test_minor_difference_warns_and_fails_with_strict_minor() -> None:
    torch = TorchBuild("2.5.1+cu124", cuda="12.4", path="/site/torch/version.py")
    nvcc = Compiler("/usr/local/cuda-12.6/bin/nvcc", 3, release="12.6", build="12.6.85")
    relaxed = compiler_findings(torch, nvcc, strict_minor=False)
    assert relaxed.errors == []
    assert relaxed.warnings == [
        "torch 2.5.1+cu124 was built for CUDA 12.4 but the image's nvcc is 12.6 "
        "(/usr/local/cuda-12.6/bin/nvcc --version, layer 3): torch.utils.cpp_extension builds "
        "with a warning; pass strict_minor=True to make this an error"
    ]
    strict = compiler_findings(torch, nvcc, strict_minor=True)
    assert strict.errors == [
        "torch 2.5.1+cu124 was built for CUDA 12.4 but the image's nvcc is 12.6 "
        "(/usr/local/cuda-12.6/bin/nvcc --version, layer 3): strict_minor=True wants the same "
        "minor; install nvcc 12.4 or a torch built for CUDA 12.6"
    ]


def test_rocm_torch_in_an_image_that_declares_cuda_fails() -> None:
    facts = CudaFacts(
        ref="x",
        env={"CUDA_VERSION": "12.4.1"},
        cuda_sources=(Found("12.4.1", "env CUDA_VERSION"),),
        torch_installs=(TorchBuild("2.3.0+rocm6.0", hip="6.0.32830", path="/t/version.py"),),
    )
    assert static_findings(facts).errors == [
        "torch 2.3.0+rocm6.0 (/t/version.py) is a ROCm build (HIP 6.0.32830) but the image "
        "declares CUDA 12.4.1 (env CUDA_VERSION): install a torch built for CUDA 12 or drop CUDA "
        "from the image"
    ]


@pytest.mark.parametrize(
    ("driver", "cuda", "outcome"),
    [
        ("580.65.06", 13000, "confirmed"),
        ("590.44.01", 13010, "confirmed"),
        ("535.104.05", 12020, "errors"),
    ],
)
def test_driver_must_run_torchs_cuda(driver, cuda, outcome) -> None:
    torch = TorchBuild("2.14.1+cu130", cuda="13.0")
    found = driver_findings(torch, GpuHost(driver, cuda))
    assert [kind for kind in ("confirmed", "warnings", "errors") if getattr(found, kind)] == [
        outcome
    ]


def test_older_minor_of_the_same_family_runs_under_minor_version_compatibility() -> None:
    torch = TorchBuild("2.9.0+cu129", cuda="12.9")
    found = driver_findings(torch, GpuHost("535.104.05", 12020))
    assert found.errors == []
    assert found.warnings == [
        "the host's driver 535.104.05 supports CUDA 12.2 and torch 2.9.0+cu129 was built for "
        "CUDA 12.9: it runs under CUDA minor version compatibility (driver >= 525.60.13), but PTX "
        "built for CUDA 12.9 and features that need a newer driver fail"
    ]


@pytest.mark.parametrize(
    ("expression", "driver", "cuda", "device", "holds"),
    [
        ("cuda>=12.4", "550.54.15", 12040, None, True),
        ("cuda>=12.4", "535.104.05", 12020, None, False),
        # Space-separated groups are alternatives: a Tesla on a 470 driver may run CUDA 12.
        ("cuda>=12.4 brand=tesla,driver>=470,driver<471", "470.57.02", 11040, "Tesla", True),
        ("cuda>=12.4 brand=tesla,driver>=470,driver<471", "470.57.02", 11040, "GeForce", False),
        ("cuda>=12.4 brand=tesla,driver>=470,driver<471", "471.11", 11040, "Tesla", False),
        ("arch>=8.0", "550.54.15", 12040, "Tesla", False),  # the Tesla here is a 7.5
        ("arch>=8.0", "550.54.15", 12040, None, True),  # no device: the toolkit assumes yes
        ("cuda>=12.4,brand!=geforce", "550.54.15", 12040, "GeForce", False),
        ("cuda~12", "550.54.15", 12040, None, None),  # invalid: the toolkit refuses it
        ("gpu>=1", "550.54.15", 12040, None, None),
    ],
)
def test_nvidia_require_is_evaluated_as_the_toolkit_does(
    expression, driver, cuda, device, holds
) -> None:
    gpu = GpuDevice(0, "GPU", 16 * GIB, device, "7.5", "GPU-0") if device else None
    assert requirement_holds(expression, GpuHost(driver, cuda), gpu) is holds


@pytest.mark.parametrize(
    ("env", "requirements"),
    [
        (
            {"NVIDIA_REQUIRE_CUDA": REQUIRE, "CUDA_VERSION": "13.0.2"},
            [("NVIDIA_REQUIRE_CUDA", REQUIRE)],
        ),
        ({"CUDA_VERSION": "11.0.3"}, [("CUDA_VERSION", "cuda>=11.0")]),  # legacy images
        ({"NVIDIA_REQUIRE_CUDA": REQUIRE, "NVIDIA_DISABLE_REQUIRE": "true"}, []),
        (
            {"NVIDIA_REQUIRE_CUDA": REQUIRE, "NVIDIA_DISABLE_REQUIRE": "no"},
            [("NVIDIA_REQUIRE_CUDA", REQUIRE)],
        ),
        ({"NVIDIA_REQUIRE_JETPACK": "csv-mounts=all"}, []),
        ({"PATH": "/usr/bin"}, []),
    ],
)
def test_nvidia_requirements_are_read_from_the_env_as_the_toolkit_reads_them(
    env, requirements
) -> None:
    assert nvidia_requirements(env) == requirements


# -- real images ----------------------------------------------------------------------------


@pytest.mark.slow
def test_nvcc_runtime_and_torch_of_the_same_cuda_pass(cu130_facts) -> None:
    facts = _check(cu130_facts, cuda="13.0", torch="2.14", strict_minor=True)
    assert facts["image_cuda"] == "13.0.96"
    assert facts["image_cuda_source"] == f"{SITE}/nvidia_cuda_runtime-13.0.96.dist-info, layer 1"
    assert facts["nvcc_version"] == "13.0.88"
    assert facts["torch_version"] == "2.14.1+cu130"
    assert facts["torch_cuda"] == "13.0"
    assert facts["torch_build"] == "cuda"
    assert facts["torch_source"] == f"{SITE}/torch/version.py, layer 2"
    assert facts["confirmed"][0] == (
        f"nvcc 13.0 ({SITE}/nvidia/cu13/bin/nvcc --version, layer 1) and torch 2.14.1+cu130 "
        "agree on CUDA 13.0"
    )
    assert facts["warnings"] == "none"


@pytest.mark.slow
def test_expectations_hold_on_the_torch_cu130_image(cu130_facts) -> None:
    _check(cu130_facts, torch="2.14.1+cu130", cuda="13")
    with pytest.raises(AssertionError) as failure:
        _check(cu130_facts, torch="2.13", cuda="12.9")
    assert str(failure.value).splitlines() == [
        f"the image's CUDA is 13.0.96 ({SITE}/nvidia_cuda_runtime-13.0.96.dist-info, layer 1), "
        "expected 12.9",
        f"the image's nvcc is 13.0 ({SITE}/nvidia/cu13/bin/nvcc --version, layer 1), "
        "expected CUDA 12.9",
        f"torch 2.14.1+cu130 ({SITE}/torch/version.py, layer 2) was built for CUDA 13.0, "
        "expected 12.9",
        f"torch is 2.14.1+cu130 ({SITE}/torch/version.py, layer 2), expected 2.13",
    ]


@pytest.mark.slow
def test_cuda12_toolchain_beside_torch_cu130_fails_on_the_major(cuda12_facts) -> None:
    with pytest.raises(AssertionError) as failure, pytest.warns(CudaCompatibilityWarning) as seen:
        _check(cuda12_facts)
    assert str(failure.value) == (
        "torch 2.14.1+cu130 was built for CUDA 13.0 but the image's ptxas is 12.9 "
        f"({SITE}/nvidia/cuda_nvcc/bin/ptxas --version, layer 3): torch.utils.cpp_extension "
        "refuses to build with a different major; install nvcc 13.x or a torch built for CUDA 12"
    )
    assert [str(w.message) for w in seen] == [
        f"the image carries CUDA of 2 majors: 13.0.96 ({SITE}/nvidia_cuda_runtime-13.0.96"
        f".dist-info, layer 1), 12.9.79 ({SITE}/nvidia_cuda_runtime_cu12-12.9.79.dist-info, "
        "layer 3)"
    ]


@pytest.mark.slow
def test_driver_floor_with_stubbed_nvml(monkeypatch, cu130_facts) -> None:
    stub_nvml(monkeypatch, driver="535.104.05", cuda=12020, gpus=[TESLA_T4])
    with pytest.raises(AssertionError) as failure:
        _check(cu130_facts)
    assert str(failure.value) == (
        "the host's driver 535.104.05 supports CUDA 12.2 and torch 2.14.1+cu130 was built for "
        "CUDA 13.0: install an NVIDIA driver >= 580, or use a torch built for CUDA 12.2 or older"
    )
    stub_nvml(monkeypatch, driver="580.65.06", cuda=13000, gpus=[TESLA_T4])
    facts = _check(cu130_facts)
    assert (facts["driver_version"], facts["driver_cuda"]) == ("580.65.06", "13.0")
    assert facts["gpus"] == ["Tesla T4"]


def test_cpu_torch_in_an_image_with_cudart_fails(engine, torch_cpu_with_cudart) -> None:
    image = engine.image(torch_cpu_with_cudart)
    with pytest.raises(AssertionError) as failure:
        assert_cuda_torch_match(image)
    assert str(failure.value) == (
        f"torch 2.13.0+cpu ({VENV_SITE}/torch/version.py, layer 1) is a CPU-only build but the "
        f"image declares CUDA 13.0.96 ({VENV_SITE}/nvidia_cuda_runtime-13.0.96.dist-info, "
        "layer 1): install a torch built for CUDA 13 or drop CUDA from the image"
    )


def test_cpu_torch_in_an_image_declaring_cuda_version_fails(engine, build_image, torch_cpu) -> None:
    image = engine.image(build_image(f"FROM {torch_cpu}\nENV CUDA_VERSION=13.0.2\n"))
    with pytest.raises(AssertionError) as failure:
        assert_cuda_torch_match(image)
    assert str(failure.value) == (
        f"torch 2.13.0+cpu ({SITE}/torch/version.py, layer 1) is a CPU-only build but the image "
        "declares CUDA 13.0.2 (env CUDA_VERSION): install a torch built for CUDA 13 or drop "
        "CUDA from the image"
    )


def test_cpu_torch_without_cuda_passes_as_a_cpu_build(cpu_facts) -> None:
    facts = _check(cpu_facts, torch="2.13")
    assert (facts["torch_version"], facts["torch_build"], facts["torch_cuda"]) == (
        "2.13.0+cpu",
        "cpu",
        "none",
    )
    assert (facts["image_cuda"], facts["nvcc_version"]) == ("none", "none")
    with pytest.raises(AssertionError, match=r"^expected CUDA 13 but imagecheck-test/.* has none"):
        _check(cpu_facts, cuda="13")


def test_image_without_torch_is_reported_as_such(cuda13_facts) -> None:
    facts = _check(cuda13_facts, cuda="13.0")
    assert (facts["torch_build"], facts["torch_version"]) == ("none", "none")
    assert facts["nvcc_version"] == "13.0.88"
    with pytest.raises(AssertionError, match=r"^expected torch 2\.14 but .* has no torch \(no "):
        _check(cuda13_facts, torch="2.14")


def test_compilers_run_in_a_container_that_is_removed_again(engine, cuda13_facts) -> None:
    assert cuda13_facts.compilers[0].build == "13.0.88"  # nvcc answered, in a container
    left = engine.client.api.containers(
        all=True, filters={"label": f"{LABEL_SESSION}={engine.session_id}"}
    )
    assert left == []


def test_given_container_runs_the_compilers_and_without_gpus_the_runtime_is_skipped(
    monkeypatch, engine, cuda13
) -> None:
    image = engine.image(cuda13)
    container = engine.run(image, entrypoint=KEEPALIVE, ports=[])
    commands = []
    run_in_container = container.exec

    def spy(command, **kwargs):
        commands.append(command)
        return run_in_container(command, **kwargs)

    monkeypatch.setattr(container, "exec", spy)
    try:
        facts = _check(image, container=container)
    finally:
        engine.remove(container)
    assert commands == [[f"{SITE}/nvidia/cu13/bin/nvcc", "--version"]]
    assert facts["nvcc_version"] == "13.0.88"
    assert facts["runtime"] == (
        f"skipped: container {container.name} has no GPUs (start it with gpus='all')"
    )


def test_host_rules_skip_with_the_reason_without_nvml(cuda13_facts) -> None:
    if nvml_loads():
        pytest.skip("this host has an NVIDIA driver (libnvidia-ml.so.1 loads)")
    facts = _check(cuda13_facts)
    assert facts["host"] == (
        "skipped: NVML library not found (libnvidia-ml.so.1): no NVIDIA driver on this host"
    )


def test_nvidia_require_cuda_of_the_image_with_stubbed_nvml(
    monkeypatch, engine, build_image, cuda13
) -> None:
    tag = build_image(f'FROM {cuda13}\nENV CUDA_VERSION=13.0.2 NVIDIA_REQUIRE_CUDA="{REQUIRE}"\n')
    facts = read_cuda_facts(engine.image(tag))
    stub_nvml(monkeypatch, driver="535.104.05", cuda=12020, gpus=[TESLA_T4])
    _check(facts)  # a Tesla on a 535 driver: the forward-compatibility alternative holds
    stub_nvml(monkeypatch, driver="535.104.05", cuda=12020, gpus=[RTX_4090])
    with pytest.raises(AssertionError) as failure:
        _check(facts)
    assert str(failure.value) == (
        "NVIDIA_REQUIRE_CUDA=cuda>=13.0 (or 2 more groups) does not hold for driver 535.104.05 "
        "(CUDA 12.2) on GPU 0 NVIDIA GeForce RTX 4090 (GeForce): nvidia-container-toolkit "
        'refuses to start the container ("unsatisfied condition: cuda>=13.0"); update the '
        "driver, or set NVIDIA_DISABLE_REQUIRE=true if the image brings its own cuda-compat"
    )


def test_runtime_probe_reports_what_torch_says(engine, torch_cpu, cpu_facts) -> None:
    container = engine.run(engine.image(torch_cpu), entrypoint=KEEPALIVE, ports=[])
    try:
        runtime = probe_torch_runtime(container, cpu_facts.torch)
    finally:
        engine.remove(container)
    assert (runtime.available, runtime.error, runtime.device_count) == (False, None, 0)
    found = runtime_findings(runtime, where="container c", gpus=None)
    assert found.errors == [
        "torch.cuda.is_available() is False in container c, which runs with GPUs: check that "
        "the driver supports torch's CUDA and that its CUDA libraries load"
    ]


@pytest.mark.slow
def test_torch_runs_a_kernel_in_a_gpu_container(client, engine, debian) -> None:
    try:
        engine.remove(engine.run(engine.image(debian), entrypoint=KEEPALIVE, gpus="all"))
    except GpuUnavailable as exc:
        pytest.skip(str(exc))
    tag = build_with_wheels(client, debian, resolve(TORCH_CU130), name="torch2.14.1-full")
    image = engine.image(tag)
    container = engine.run(image, entrypoint=KEEPALIVE, ports=[], gpus="all")
    try:
        facts = _check(image, container=container, torch="2.14.1")
    finally:
        engine.remove(container)
    assert facts["runtime"] == "ok"
    assert facts["runtime_device_count"] == len(facts["gpus"])
    assert (facts["cudnn_version"], facts["runtime_cudnn"]) == ("9.24.0.43", 92400)
