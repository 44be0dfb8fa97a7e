"""The inbound GraphQL schema: built from the owner's SDL, mutation fields (and, with a
request/reply capable runtime, query fields) wired to the bus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    get_named_type,
    validate_schema,
)

from esb.bus.errors import ConfigError


def load_schema(path: Path, *, answers_queries: bool = False) -> GraphQLSchema:
    """Build and check the schema; every problem is a :class:`ConfigError`.
    ``answers_queries``: Query fields resolve through request/reply routes, so an SDL with
    queries alone (a read facade) is complete."""
    try:
        schema = build_schema(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"sdl: cannot read {path}: {exc}"]) from exc
    except GraphQLError as exc:
        raise ConfigError([f"sdl: {path}: {exc.message}"]) from exc
    if schema.query_type is None:  # GraphQL requires a query root; give it a harmless one
        placeholder = GraphQLObjectType("Query", {"_": GraphQLField(GraphQLBoolean)})
        schema = GraphQLSchema(query=placeholder, mutation=schema.mutation_type,
                               types=list(schema.type_map.values()),
                               directives=schema.directives)
    problems = [f"sdl: {path}: {e.message}" for e in validate_schema(schema)]
    mutation = schema.mutation_type
    if mutation is None:
        if not answers_queries:
            problems.append(f"sdl: {path} declares no Mutation type")
    else:
        for name, field in mutation.fields.items():
            returned = get_named_type(field.type)
            if isinstance(returned, GraphQLScalarType):
                if returned.name not in ("ID", "String"):
                    problems.append(f"sdl: Mutation.{name} returns {returned.name}; "
                                    "return ID, String or a type with an id field")
            elif not (isinstance(returned, GraphQLObjectType) and "id" in returned.fields):
                problems.append(f"sdl: Mutation.{name} returns {returned.name}, which has no "
                                "id field")
    if problems:
        raise ConfigError(problems)
    return schema


def wire_queries(schema: GraphQLSchema, resolve: Any) -> None:
    """Point every Query field (but a placeholder root's) at ``resolve(name, arguments,
    info)``."""
    query = schema.query_type
    if query is None:
        return
    for name, field in query.fields.items():
        if name != "_":
            field.resolve = _resolver(name, resolve)


def wire_mutations(schema: GraphQLSchema, resolve: Any) -> None:
    """Point every mutation field at ``resolve(field_name, arguments, info)``."""
    if schema.mutation_type is None:
        return
    for name, field in schema.mutation_type.fields.items():
        field.resolve = _resolver(name, resolve)


def _resolver(name: str, resolve: Any) -> Any:
    async def resolver(_root: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        return await resolve(name, arguments, info)

    return resolver
