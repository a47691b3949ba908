"""Click options made from the settings model (snitch/core/settings.py).

Every field of ``NetworkShape`` or ``RunSettings`` with ``option(...)`` metadata is a
command-line option: its flag and help come from the metadata, its default from the
field, its type from the field's type (a flag for a bool, a choice for an enum, a
comma-separated list for ports, a range where the metadata gives one). Values are
checked here, at the edge: a typo in ``--web-ports`` is a usage error on the host.

``network_options`` (``coderun run``, ``coderun pool start``) and ``run_options``
(``coderun run``) add the options; ``take_settings`` takes their values out of the
command's parameters (or a profile's options, checked the same way) to build the
settings: ``NetworkShape(**take_settings(NetworkShape, params))``.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import click

from snitch.core.settings import NetworkShape, Option, RunSettings, option_of

F = TypeVar("F", bound=Callable[..., Any])


class PortList(click.ParamType[tuple[int, ...], Any]):
    """``80,443`` (or ``''`` for none): TCP ports, each 1-65535."""

    name = "ports"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, ...]:  # fmt: skip
        if isinstance(value, tuple):
            return value
        ports: list[int] = []
        for part in str(value).split(","):
            if not part.strip():
                continue
            try:
                port = int(part.strip(), 10)
            except ValueError:
                self.fail(f"{part.strip()!r} is not a port number", param, ctx)
            if not 1 <= port <= 65535:
                self.fail(f"port {port} is not in 1-65535", param, ctx)
            ports.append(port)
        return tuple(ports)


class EnumChoice(click.Choice[str]):
    """One of an enum's values (as written, lower case), handed over as the member."""

    def __init__(self, kind: type[enum.Enum]) -> None:
        super().__init__([str(m.value) for m in kind], case_sensitive=True)
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:  # fmt: skip
        if isinstance(value, self.kind):
            return value
        return self.kind(super().convert(value, param, ctx))


def _click_type(tp: Any, opt: Option) -> dict[str, Any]:
    """click.option keywords for a field of type ``tp``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    if tp is bool:
        return {"is_flag": True}
    if typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is int:
        return {"type": PortList()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": EnumChoice(tp)}
    if tp is int:
        low = None if opt.min is None else int(opt.min)
        high = None if opt.max is None else int(opt.max)
        return {"type": click.IntRange(low, high) if (low, high) != (None, None) else int}
    if tp is float:
        rng = (opt.min, opt.max) != (None, None)
        return {"type": click.FloatRange(opt.min, opt.max) if rng else float}
    if tp is str:
        return {"type": str}
    raise TypeError(f"no command-line type for {tp!r}")


def _default_text(value: object) -> object:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _fields(cls: type[Any]) -> list[tuple[str, Option, dict[str, Any], Any]]:
    """(name, option, click keywords, default) of every option field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return [(f.name, opt, _click_type(hints[f.name], opt), f.default)
            for f in dataclasses.fields(cls) if (opt := option_of(f)) is not None]  # fmt: skip


def settings_options(cls: type[Any], skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """A decorator: a click option for every option field of ``cls`` (the parameter
    named as the field), but those named in ``skip``."""

    def decorate(func: F) -> F:
        for name, opt, kind, default in reversed(_fields(cls)):
            if name in skip:
                continue
            show = default is not None and not kind.get("is_flag")
            func = click.option(
                opt.flag, name, default=_default_text(default) if show else default,
                show_default=show, help=opt.help, **kind,
            )(func)  # fmt: skip
        return func

    return decorate


def take_settings(cls: type[Any], options: dict[str, Any]) -> dict[str, Any]:
    """The values of ``cls``'s option fields, taken out of ``options`` (a command's
    parameters, or a profile's options as written) and checked as on the command line:
    click errors for bad ones."""
    values: dict[str, Any] = {}
    for name, opt, kind, _ in _fields(cls):
        if name not in options:
            continue
        value = options.pop(name)
        if value is None or kind.get("is_flag"):
            values[name] = value if value is None else bool(value)
            continue
        param_type: click.ParamType[Any, Any] = kind["type"]
        if not isinstance(param_type, click.ParamType):
            param_type = click.types.convert_type(param_type)
        try:
            values[name] = param_type.convert(value, None, None)
        except click.BadParameter as exc:
            exc.param_hint = opt.flag
            raise
    return values


network_options = settings_options(NetworkShape)
run_options = settings_options(RunSettings)
