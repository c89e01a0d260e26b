"""`@record`: what the answer path used of `@dataclass` (an __init__ from the annotated
fields, defaults, a per-instance default made by `factory`, __repr__ and __eq__), without
importing dataclasses: that module pulls in inspect, ast and dis, about a tenth of a
whole `vmdex vm` process's start-up."""
from __future__ import annotations

_MISSING = object()


class factory:
    """A default made anew for each instance (dataclasses' default_factory)."""

    def __init__(self, make):
        self.make = make


def record(cls):
    """Give `cls` (annotated fields, defaults as class attributes) __slots__-free instances
    with a positional-or-keyword __init__, __repr__ and __eq__."""
    names = list(cls.__dict__.get("__annotations__", {}))
    scope: dict = {"_MISSING": _MISSING}
    params, body = [], []
    for n in names:
        default = cls.__dict__.get(n, _MISSING)
        if default is _MISSING:
            params.append(n)
            body.append(f"    self.{n} = {n}")
        elif isinstance(default, factory):
            scope[f"_make_{n}"] = default.make
            params.append(f"{n}=_MISSING")
            body.append(f"    self.{n} = _make_{n}() if {n} is _MISSING else {n}")
            delattr(cls, n)
        else:
            scope[f"_default_{n}"] = default
            params.append(f"{n}=_default_{n}")
            body.append(f"    self.{n} = {n}")
    src = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    exec(src, scope)
    cls.__init__ = scope["__init__"]
    cls.__repr__ = lambda self: (f"{type(self).__name__}(" +
                                 ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")")
    cls.__eq__ = lambda self, other: type(other) is type(self) and all(
        getattr(self, n) == getattr(other, n) for n in names)
    cls.__hash__ = None          # mutable, as a dataclass with eq
    return cls
