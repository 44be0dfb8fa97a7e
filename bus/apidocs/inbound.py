"""The OpenAPI 3.1 document of a daemon's inbound HTTP sources (``/openapi.json``).

Built from the running configuration: each source whose adapter can describe itself
(:attr:`~esb.adapters.spec.AdapterSpec.openapi`) adds its paths, with the request schemas the
route set in force validates with (:mod:`esb.bus.apidocs.request_schemas`). Sources of other
adapters are listed in ``x-esb-undescribed`` so a reader knows they exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esb.adapters.openapi import PROBLEM_SCHEMA, ApiPaths, SourceApi
from esb.bus.apidocs.admin import OPENAPI_VERSION
from esb.bus.apidocs.request_schemas import relocate, reply_schemas, request_schemas
from esb.bus.config.loader import Loaded
from esb.bus.plugins import Registry


def inbound_document(loaded: Loaded, registry: Registry, route_files: Mapping[str, str], *,
                     route_version: int, server: str | None = None) -> dict[str, Any]:
    """The document for ``loaded``'s sources under the route set ``route_files``."""
    cfg = loaded.config
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {"schemas": {"Problem": PROBLEM_SCHEMA},
                                  "securitySchemes": {}}
    undescribed: list[dict[str, str]] = []
    tags = []
    for name in sorted(cfg.sources):
        source = cfg.sources[name]
        settings = loaded.source_settings.get(name)
        try:
            spec = registry.get(source.adapter)
        except Exception:  # configuration was checked at start; an unloadable plugin here
            spec = None    # must not take the whole document down
        describe = getattr(spec, "openapi", None)
        if describe is None or settings is None:
            undescribed.append({"source": name, "adapter": source.adapter})
            continue
        api = SourceApi(name=name, settings=settings,
                        request_schemas=request_schemas(route_files, name, base_dir=cfg.base_dir,
                                                        named=cfg.transformers),
                        reply_schemas=reply_schemas(route_files, name, base_dir=cfg.base_dir,
                                                    named=cfg.transformers),
                        description=source.description)
        described: ApiPaths = describe(api)
        if not described.paths:
            continue
        tags.append({"name": name, "description": source.description
                     or f"Source {name!r} ({source.adapter} adapter)"})
        paths.update(described.paths)
        components["securitySchemes"].update(described.security_schemes)
        for schema_name, schema in described.schemas.items():
            pointer = f"#/components/schemas/{schema_name}"
            embedded = relocate(schema, pointer)
            if isinstance(embedded, dict):
                embedded.pop("$id", None)  # its refs now resolve against the document
            components["schemas"][schema_name] = embedded
    if not components["securitySchemes"]:
        del components["securitySchemes"]
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "esb inbound API",
                 "version": f"routes-v{route_version}",
                 "description": "The HTTP sources this esb daemon serves. Generated from its "
                                "configuration and the route set in force (version "
                                f"{route_version}); every error is RFC 9457 problem+json."},
        "paths": paths,
        "components": components,
        "tags": tags,
    }
    if server:
        doc["servers"] = [{"url": server}]
    if undescribed:
        doc["x-esb-undescribed"] = undescribed
    return doc
