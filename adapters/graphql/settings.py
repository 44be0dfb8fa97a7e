"""Settings of the graphql adapter (validated at load time)."""

from __future__ import annotations

from pydantic import Field

from esb.adapters.auth.settings import InboundAuth, OutboundAuth
from esb.adapters.graphql.limits import QueryLimits
from esb.adapters.spec import AdapterSettings

DEFAULT_PERMANENT_CODES = ["GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT",
                           "GRAPHQL_PARSE_FAILED"]


class GraphqlInboundSettings(AdapterSettings):
    """A GraphQL endpoint whose mutations become envelopes."""

    path: str = Field(pattern=r"^/")
    #: SDL file (relative to the configuration folder). Every ``Mutation`` field must return
    #: ``ID``/``String`` (scalar, the envelope id) or an object type with an ``id`` field.
    sdl: str
    #: CloudEvents ``source``; the endpoint name when not given.
    source: str | None = None
    max_body: int = Field(1_048_576, ge=1)
    #: Who may call: ``api_key``, ``basic`` or ``jwt`` (see docs/adapters.md, Authentication).
    auth: InboundAuth | None = None
    #: Deepest selection nesting answered (the operation's fields are level 1).
    max_depth: int = Field(QueryLimits.max_depth, ge=1, le=100)
    #: Aliases one query may use (each aliased field is one more backend call).
    max_aliases: int = Field(QueryLimits.max_aliases, ge=0, le=1000)
    #: Fields one query may select, fragments expanded (each spread counts again).
    max_fields: int = Field(QueryLimits.max_fields, ge=1, le=10000)
    #: Lexical tokens in one request's document.
    max_tokens: int = Field(QueryLimits.max_tokens, ge=10)
    #: Cost of one operation: each field 1, each mutation ``mutation_cost``.
    max_cost: int = Field(QueryLimits.max_cost, ge=1)
    #: What one mutation field costs (it publishes an envelope).
    mutation_cost: int = Field(QueryLimits.mutation_cost, ge=1)

    @property
    def limits(self) -> QueryLimits:
        return QueryLimits(max_tokens=self.max_tokens, max_depth=self.max_depth,
                           max_fields=self.max_fields, max_aliases=self.max_aliases,
                           max_cost=self.max_cost, mutation_cost=self.mutation_cost)


class GraphqlOutboundSettings(AdapterSettings):
    """Posts one GraphQL document per envelope."""

    url: str = Field(pattern=r"^https?://")
    #: File with the query/mutation (relative to the configuration folder).
    document: str
    #: Needed when the document holds more than one operation.
    operation_name: str | None = None
    #: Variable name → envelope path: ``data.orderId``, ``data`` (all of it), ``id``,
    #: ``subject`` ... (a leading ``$`` is allowed). Empty: the data object is the variables.
    variables: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(30.0, gt=0)
    #: ``errors[].extensions.code`` values that make a failure permanent; others are retried.
    permanent_error_codes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PERMANENT_CODES))
    #: Credentials: ``api_key``, ``basic``, ``bearer`` or ``oauth2`` (client credentials).
    auth: OutboundAuth | None = None
