"""What is known of each endpoint ahead of the call, generated from the OpenAPI description
of WeChat Pay (MIT; see ``NOTICE``): the typed surface of the chain and the endpoint table."""

from .facts import EndpointFacts, endpoint_facts

__all__ = ["EndpointFacts", "endpoint_facts"]
