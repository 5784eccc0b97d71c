"""The embedded local service stack: Kafka (KRaft) and Elasticsearch on loopback, without Docker.

Artifacts come from Maven Central (``mvn`` with a local repository inside the cache), services run as
detached processes tracked by pid files under ``StackSettings.home``. Modules, one job each:

- ``maven``: resolve artifacts into the cache (atomic, marker-based; a warm cache never runs Maven)
- ``process``: pid files, detached start, liveness, process-group stop, ports, log tails, the stack lock
- ``host``: the JDK, the unprivileged Elasticsearch user, directory traversal checks, chown
- ``base``: the life cycle every service shares (launch, wait until ready, stop, status)
- ``kafka`` / ``elasticsearch``: what each service runs and how its config is rendered
- ``services``: :class:`stack.services.LocalStack`, the API used by tests and ``siem run``
- ``cli``: ``siem stack up|down|status``
"""
