"""A worker's place in its Temporal Worker Deployment: the version it registers as, and
making that version current on a first deploy.

Why only "if none": which version new work runs on is an operator's decision (README,
"Deploying a new version"); a worker taking over a deployment that already has a current
version would roll every deploy forward, half-started, by itself.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from orchestrator.settings import DeploymentSettings

log = logging.getLogger(__name__)

SET_CURRENT_ATTEMPTS = 30
"""Looks at the deployment before giving up (the server knows a version from its first poll)."""
SET_CURRENT_PAUSE = 1.0


def deployment_version(settings: DeploymentSettings) -> WorkerDeploymentVersion:
    return WorkerDeploymentVersion(deployment_name=settings.name, build_id=settings.build_id)


def deployment_config(settings: DeploymentSettings) -> WorkerDeploymentConfig | None:
    """The Worker's deployment options; ``None`` for an unversioned worker."""
    if not settings.versioning:
        return None
    return WorkerDeploymentConfig(version=deployment_version(settings), use_worker_versioning=True)


async def current_build_id(client: Client, deployment_name: str) -> str | None:
    """The deployment's current build id: ``""`` when it has none (its work goes to
    unversioned workers), ``None`` when the server does not know the deployment yet."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return described.worker_deployment_info.routing_config.current_deployment_version.build_id


async def set_current_version(client: Client, version: WorkerDeploymentVersion) -> None:
    """Route new work to ``version`` (what ``temporal worker deployment set-current-version``
    does); the server refuses a version none of whose workers has polled yet."""
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity=f"orchestrator-worker {version.to_canonical_string()}",
        )
    )


async def make_current_if_none(client: Client, settings: DeploymentSettings) -> bool:
    """Make this worker's version current if its deployment has no current version;
    ``True`` if it did. Retried while the server does not know this version yet, and until
    another worker of the same first deploy has done it."""
    if not (settings.versioning and settings.set_current_if_none):
        return False
    version = deployment_version(settings)
    for _ in range(SET_CURRENT_ATTEMPTS):
        try:
            current = await current_build_id(client, settings.name)
            if current:  # someone else's decision (or ours, by another worker)
                return False
            if current is not None:
                await set_current_version(client, version)
                log.info("made %s current", version.to_canonical_string())
                return True
        except RPCError as exc:  # no poller seen yet, a concurrent change, Temporal away
            log.info("could not make %s current yet: %s", version.build_id, exc)
        await asyncio.sleep(SET_CURRENT_PAUSE)
    log.warning("gave up making %s current; set it by hand", version.to_canonical_string())
    return False
