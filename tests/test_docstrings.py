"""Every public function, class and method has a numpydoc docstring with an example; outputs name their keys."""

from __future__ import annotations

import inspect

import pytest

import spalstf as sp

NAMESPACES = ("tl", "get", "pl", "datasets", "metrics", "model", "benchmark")


def _public_callables():
    for ns in NAMESPACES:
        module = getattr(sp, ns)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, Exception):
                continue  # exceptions are documented by their message, not used directly
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"sp.{ns}.{name}", obj
            if inspect.isclass(obj):  # its methods, also those of its mixins (the package's own bases)
                own = [c for c in inspect.getmro(obj) if c.__module__.startswith("spalstf")]
                members = {attr: member for cls in reversed(own) for attr, member in vars(cls).items()}
                for attr, member in members.items():
                    if attr.startswith("_") or isinstance(member, property):
                        continue
                    func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                    if inspect.isfunction(func):
                        yield f"sp.{ns}.{name}.{attr}", func


PUBLIC = dict(_public_callables())


def test_the_public_api_is_found():
    for name in [
        "sp.tl.spalstf_impute",
        "sp.get.imputed",
        "sp.model.SpaLSTF.train",
        "sp.model.SpaLSTF.impute",
        "sp.pl.spatial_genes",
    ]:
        assert name in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_numpydoc_sections_and_example(name):
    obj = PUBLIC[name]
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    assert "Examples\n--------" in doc, f"{name}: add an 'Examples' section"
    params = [
        p
        for p in inspect.signature(obj).parameters.values()
        if p.name not in ("self", "cls") and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    if params:
        # a dataclass documents its fields as attributes
        assert "Parameters\n----------" in doc or "Attributes\n----------" in doc, f"{name}: document its parameters"
        undocumented = [p.name for p in params if p.name not in doc]
        assert not undocumented, f"{name}: parameters missing from the docstring: {undocumented}"


@pytest.mark.parametrize("name", ["sp.tl.spalstf_impute"])
def test_writers_name_the_keys_they_write(name):
    doc = inspect.getdoc(PUBLIC[name])
    assert "obsm[key_added]" in doc and "uns[key_added]" in doc
