"""Environment overrides: ``SSE_HUB_<SECTION>__<KEY>`` variables as values for dotted keys.

``SSE_HUB_BROKER__BACKEND=redis`` sets ``broker.backend``; a double underscore separates
levels. Values are taken verbatim for string keys (a token may hold ``#``, ``: `` or look
like a number) and read as YAML for the others, so ``8080`` is a number, ``true`` a boolean
and ``[a, b]`` a list; a list may also be written ``a,b``. An empty value unsets an
optional string.

Invariants:

1. Every ``SSE_HUB_*`` variable becomes an override (unknown ones too, so that validation
   names them), except ``SSE_HUB_CONFIG`` (the file) and Kubernetes service links
   (``service_links``: name and value both of the kubelet's shape).
2. This module knows the settings model only through the root passed in, so it imports
   nothing of ``config``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Literal, TypeGuard, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from sse_hub.config.service_links import service_link_names

ENV_PREFIX = "SSE_HUB_"
CONFIG_VARIABLE = "SSE_HUB_CONFIG"

Overrides = dict[str, tuple[str, object]]


def service_link_variables(environ: Mapping[str, str], root: type[BaseModel]) -> list[str]:
    """The service-link names in ``environ``, sorted; never one of ``root``'s top-level keys."""
    names = service_link_names(environ, ENV_PREFIX)
    return [name for name in names if name[len(ENV_PREFIX) :].lower() not in root.model_fields]


def env_overrides(environ: Mapping[str, str], root: type[BaseModel]) -> Overrides:
    """``SSE_HUB_BROKER__BACKEND=redis`` -> ``{"broker.backend": ("SSE_HUB_BROKER__BACKEND", "redis")}``."""
    found: Overrides = {}
    links = set(service_link_variables(environ, root))
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_VARIABLE or name in links:
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        found[key] = (name, _env_value(_accepted_types(root, key), value))
    return found


def model_at(root: type[BaseModel], path: list[str] | tuple[str, ...]) -> type[BaseModel] | None:
    """The section model at ``path`` (``["auth", "subscriber_jwt"]``, ``["streams", "0"]``)."""
    model = root
    for part in path:
        if part.isdigit():
            continue  # an item of a list of sections: the model is already the item's
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) is list:
            (annotation,) = get_args(annotation)
        # An optional section (``mercure.subscriber_jwt: MercureJwtConfig | None``) is its model.
        models = [member for member in _union_members(annotation) if _is_model(member)]
        if len(models) != 1:
            return None
        model = models[0]
    return model


def _env_value(accepts: set[object], value: str) -> object:
    if str in accepts:
        # An empty value unsets an optional string (``auth.subscriber_jwt.secret``).
        return None if value == "" and type(None) in accepts else value
    if list in accepts and not value.lstrip().startswith("["):
        return [item.strip() for item in value.split(",") if item.strip()]
    if not value.strip():
        return ""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        # Left as a string: validation then names the key and says what it expects.
        return value


def _accepted_types(root: type[BaseModel], key: str) -> set[object]:
    """The types a dotted key's field accepts at the top of its annotation (``str``,
    ``NoneType``, ``int``, ``list``...); empty for an unknown key."""
    *sections, leaf = key.split(".")
    model = model_at(root, sections)
    field = model.model_fields.get(leaf) if model is not None else None
    if field is None:
        return set()
    return {_plain_type(option) for option in _union_members(field.annotation)}


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_members(annotation: object) -> tuple[object, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _plain_type(annotation: object) -> object:
    """``Literal["a", "b"]`` -> ``str``, ``list[str]`` -> ``list``, ``None`` -> ``NoneType``."""
    if annotation is None:
        return type(None)
    origin = get_origin(annotation)
    if origin is Literal:
        return str if all(isinstance(arg, str) for arg in get_args(annotation)) else Literal
    return origin or annotation
