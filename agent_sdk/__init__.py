"""The agent SDK: what an agent team imports to plug its agent into the orchestrator.

    from agent_sdk import AgentRuntime

    runtime = AgentRuntime("researcher", recorder=DatabaseRecorder(sessionmaker))
    worker = runtime.worker(client, process)      # serves process_prospect on agent-researcher

``process(task) -> AgentResult`` does the agent's work. The SDK records an ``agent_runs`` row
around every call (running, then completed with the records processed or failed with the
error), and never does the same handoff twice: the handoff id is the idempotency key.
Agents that cannot reach the database report their runs through the API instead
(``ApiRecorder``). A scheduled agent (``run_every``) passes ``nudge=feed_nudge(client)`` so
the orchestrator's change feed looks at once after each run that wrote prospects.
"""

from agent_sdk.recorders import ApiRecorder, DatabaseRecorder, RunRecorder
from agent_sdk.runtime import AgentRuntime, feed_nudge, run_every

__all__ = [
    "AgentRuntime",
    "ApiRecorder",
    "DatabaseRecorder",
    "RunRecorder",
    "feed_nudge",
    "run_every",
]
