"""Build configuration for the compiled hot path (everything else is in pyproject.toml).

`proxy._accel._speedups` is optional: when no C compiler or Python headers are present the
install still succeeds and the proxy runs its pure-Python twins (it logs which one is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "proxy._accel._speedups",
            sources=["proxy/_accel/_speedups.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
