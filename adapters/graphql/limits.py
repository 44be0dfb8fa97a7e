"""What one GraphQL request may ask for, checked before validation and execution.

graphql-core executes what it is given: a query nested 50 levels deep, or 1,000 aliased
mutations (whose serial execution recursed past Python's stack: a RecursionError). Validation
itself is quadratic in the worst case (overlapping fields). So a request is measured on its
syntax tree first, fragments expanded where they are spread, and refused at the first limit
passed — the walk never does more work than the limits allow, whatever fragments multiply:

* ``max_tokens`` — lexical tokens in the document (the parser stops there);
* ``max_depth`` — nesting of selection sets (the operation's root fields are depth 1);
* ``max_fields`` — field selections, each spread of a fragment counting its fields again;
* ``max_aliases`` — aliased field selections (each aliased field of a query is one more
  backend call when fields resolve through request/reply routes);
* ``max_cost`` — fields cost 1, and every root field of a mutation ``mutation_cost`` (it
  publishes an envelope).
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
    OperationType,
    SelectionSetNode,
)


@dataclass(frozen=True)
class QueryLimits:
    max_depth: int = 10
    max_aliases: int = 20
    max_fields: int = 200
    max_tokens: int = 10_000
    max_cost: int = 1_000
    mutation_cost: int = 10


class TooComplex(ValueError):
    """The request passes a limit; the message names it."""


class _Budget:
    def __init__(self, limits: QueryLimits) -> None:
        self.limits = limits
        self.fields = self.aliases = self.cost = 0

    def field(self, node: FieldNode, depth: int, root_mutation: bool) -> None:
        limits = self.limits
        if depth > limits.max_depth:
            raise TooComplex(f"the query is nested {depth} levels deep; at most "
                             f"{limits.max_depth} are answered")
        self.fields += 1
        if self.fields > limits.max_fields:
            raise TooComplex(f"the query selects more than {limits.max_fields} fields "
                             "(fragments count each time they are spread)")
        if node.alias is not None:
            self.aliases += 1
            if self.aliases > limits.max_aliases:
                raise TooComplex(f"the query has more than {limits.max_aliases} aliases")
        self.cost += limits.mutation_cost if root_mutation else 1
        if self.cost > limits.max_cost:
            raise TooComplex(f"the query costs more than {limits.max_cost} (each field 1, each "
                             f"mutation {limits.mutation_cost})")


def check_operation(document: DocumentNode, operation: OperationDefinitionNode,
                    limits: QueryLimits) -> None:
    """Raise :class:`TooComplex` when ``operation`` of ``document`` passes ``limits``."""
    fragments = {d.name.value: d for d in document.definitions
                 if isinstance(d, FragmentDefinitionNode)}
    budget = _Budget(limits)
    mutation = operation.operation == OperationType.MUTATION
    # An explicit stack instead of recursion: nesting is bounded by max_depth anyway, but the
    # walk must not depend on Python's recursion limit.
    stack: list[tuple[SelectionSetNode, int, tuple[str, ...]]] = [
        (operation.selection_set, 1, ())]
    while stack:
        selection_set, depth, spreads = stack.pop()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                budget.field(selection, depth, mutation and depth == 1)
                if selection.selection_set is not None:
                    stack.append((selection.selection_set, depth + 1, spreads))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, depth, spreads))
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in spreads:  # a cycle: validation says
                    stack.append((fragment.selection_set, depth, (*spreads, name)))
