"""How big a GraphQL query may be, checked on the parsed document before anything runs.

A query's cost grows with its depth (nested selections) and its breadth (fields, and aliases:
one field asked a hundred times under a hundred aliases is a hundred backend calls when fields
resolve through routes). :func:`check_limits` walks the operation's selections — fragments
expanded where they are spread — and stops as soon as a limit is passed, so a document built to
explode (fragments spreading fragments) costs no more than the limits themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int
    max_aliases: int
    max_fields: int


class TooBig(Exception):
    """The query passes a limit; the message says which."""


def check_limits(document: DocumentNode, operation: OperationDefinitionNode,
                 limits: QueryLimits) -> None:
    """Raise :class:`TooBig` when ``operation`` of ``document`` passes ``limits``."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    counts = {"fields": 0, "aliases": 0}

    def walk(selections: SelectionSetNode, depth: int, spread: frozenset[str]) -> None:
        if depth > limits.max_depth:
            raise TooBig(f"the query is nested {depth} levels deep; at most "
                         f"{limits.max_depth} are answered")
        for node in selections.selections:
            if isinstance(node, FieldNode):
                counts["fields"] += 1
                if counts["fields"] > limits.max_fields:
                    raise TooBig(f"the query selects more than {limits.max_fields} fields")
                if node.alias is not None:
                    counts["aliases"] += 1
                    if counts["aliases"] > limits.max_aliases:
                        raise TooBig(f"the query uses more than {limits.max_aliases} aliases")
                if node.selection_set is not None:
                    walk(node.selection_set, depth + 1, spread)
            elif isinstance(node, InlineFragmentNode):
                walk(node.selection_set, depth, spread)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in spread:  # a cycle is invalid anyway
                    walk(fragment.selection_set, depth, spread | {name})

    walk(operation.selection_set, 1, frozenset())
