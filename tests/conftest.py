"""Every module in tests/fixtures is a pytest plugin: servers started on free loopback ports."""

import pkgutil

import tests.fixtures

HELPERS = {"ports"}  # plain helper modules, imported by the fixtures themselves

pytest_plugins = [
    f"tests.fixtures.{module.name}"
    for module in pkgutil.iter_modules(tests.fixtures.__path__)
    if module.name not in HELPERS
]
