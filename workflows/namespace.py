"""Registering the project's custom search attributes on a Temporal namespace."""

from __future__ import annotations

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError

from workflows.search_attributes import ALL

log = logging.getLogger(__name__)


async def ensure_search_attributes(client: Client) -> list[str]:
    """Add whichever of our search attributes the namespace lacks; returns those added.

    Temporal Cloud manages attributes through its own control plane, so a refusal here is
    logged, not fatal: the operator registers them there once.
    """
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = {
            key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
            for key in ALL
            if key.name not in existing.custom_attributes
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
            log.info("registered search attributes: %s", ", ".join(sorted(missing)))
        return sorted(missing)
    except RPCError as exc:
        log.warning("could not register search attributes (%s); register them by hand", exc)
        return []
