"""Builds the optional C++ CPU kernels in csrc/ into ``syncssl._C``.

Where no compiler (or no torch headers) is available the package still installs; ``syncssl.ops`` then
says once that it falls back to the PyTorch reference implementations.
"""
import glob
import os
import sys

from setuptools import setup


def _extensions():
    if os.environ.get("SYNCSSL_NO_EXT") == "1":
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("syncssl: torch not importable at build time; skipping the C++ extension", file=sys.stderr)
        return [], {}
    sources = sorted(glob.glob("csrc/*.cpp"))
    flags = ["-O3", "-fopenmp", "-std=c++17"]
    ext = CppExtension(
        "syncssl._C", sources, extra_compile_args={"cxx": flags}, extra_link_args=["-fopenmp"],
        py_limited_api=False,
    )

    class OptionalBuild(BuildExtension):
        """A failed compile is reported, not fatal: the PyTorch reference path still works."""

        def run(self):
            try:
                super().run()
            except Exception as e:  # noqa: BLE001 - any toolchain failure
                print(f"syncssl: C++ extension not built ({e}); using PyTorch fallbacks", file=sys.stderr)

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as e:  # noqa: BLE001
                print(f"syncssl: C++ extension not built ({e}); using PyTorch fallbacks", file=sys.stderr)

    return [ext], {"build_ext": OptionalBuild.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
