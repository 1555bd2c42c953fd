"""Build script for the C extension ``multigil._core``.

Everything else (metadata, packages, package data) lives in pyproject.toml.

Environment:
  MULTIGIL_STRICT=1    add -Wall -Wextra -Werror (CI always sets it)
  MULTIGIL_SANITIZE=1  build with AddressSanitizer + UndefinedBehaviorSanitizer;
                       the interpreter must then run with the sanitizer
                       runtimes preloaded (see .ci/run)
  MULTIGIL_BUILD_BASE  build directory (default: build/); scripts/setup.sh
                       gives every build a fresh one
"""

from __future__ import annotations

import os
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CORE_DIR = os.path.join("src", "multigil", "_core")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "false", "off")


def _rel(paths: list[str]) -> list[str]:
    # setuptools wants paths relative to the project root, '/'-separated.
    return sorted(os.path.relpath(p, HERE).replace(os.sep, "/") for p in paths)


sources = _rel(glob(os.path.join(HERE, CORE_DIR, "*.c")))
headers = _rel(glob(os.path.join(HERE, CORE_DIR, "*.h")))
if not sources:
    sys.exit(f"setup.py: no C sources found in {CORE_DIR}/*.c")

compile_args = ["-std=c11", "-O2"]
link_args: list[str] = []
if _flag("MULTIGIL_STRICT"):
    compile_args += ["-Wall", "-Wextra", "-Werror"]
if _flag("MULTIGIL_SANITIZE"):
    san = [
        "-fsanitize=address,undefined",
        "-fno-omit-frame-pointer",
        "-fno-sanitize-recover=undefined",
        "-g",
        "-O1",  # after -O2: the last -O wins
    ]
    compile_args += san
    link_args += san


class BuildExt(build_ext):
    """build_ext that always recompiles, in parallel.

    The sources are few; always recompiling means a build with other flags
    (MULTIGIL_SANITIZE, MULTIGIL_STRICT) never picks up a stale object file
    from an earlier build in the same build directory.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        self.force = True
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


options = {}
if os.environ.get("MULTIGIL_BUILD_BASE"):
    options["build"] = {"build_base": os.environ["MULTIGIL_BUILD_BASE"]}


setup(
    ext_modules=[
        Extension(
            "multigil._core",
            sources=sources,
            depends=headers,
            include_dirs=[CORE_DIR],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            libraries=["pthread"],
        )
    ],
    cmdclass={"build_ext": BuildExt},
    options=options,
)
