"""Policies in the agent's process: local ones (``dt.add_policy``) and the sidecar's (``GET
/v1/policies?agent_id=``), checked and matched by the same rules as the daemon's API
(``dunetrace._detectors.policy_rules``, the repository's ``detectors/policy_rules.py``).

Local policies are numbered from -1 down, so their ids never meet the sidecar's. At equal
priority a local policy comes before a remote one. The sidecar's policies are fetched off the
caller's thread and cached 60 s per agent; a run waits for the very first answer at most
``first_wait`` seconds, and when the sidecar cannot be reached the SDK says so once and keeps
working on its local policies."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ._detectors.policy_rules import Policy, PolicyError, parse_policy

logger = logging.getLogger("dunetrace")

PolicyConfigError = PolicyError  # the published SDK's name for a refused policy

CACHE_TTL_S = 60.0
RETRY_AFTER_FAILURE_S = 10.0
FETCH_TIMEOUT_S = 2.0
FIRST_WAIT_S = 0.5
MAX_BODY = 4 * 1024 * 1024


class PolicyViolation(RuntimeError):
    """A ``stop`` policy fired: the run ends with exit_reason ``policy_violation``."""

    def __init__(self, policy_name: str, action: Mapping[str, Any], message: str = "", policy_id: int = 0) -> None:
        self.policy_name = policy_name
        self.action = dict(action)
        self.policy_id = policy_id
        super().__init__(message or f"Policy '{policy_name}' triggered — run stopped")


class RemotePolicies:
    """The sidecar's policies per agent: fetched in a background thread, cached ``CACHE_TTL_S``."""

    def __init__(
        self, endpoint: str, api_key: str, timeout: float = FETCH_TIMEOUT_S, first_wait: float = FIRST_WAIT_S
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.first_wait = first_wait
        self._lock = threading.Lock()
        self._policies: dict[str, list[Policy]] = {}
        self._due: dict[str, float] = {}  # agent -> monotonic time of the next fetch
        self._inflight: dict[str, threading.Event] = {}
        self._warned = False
        self.generation = 0  # bumps when an agent's policies change

    def policies(self, agent_id: str) -> list[Policy]:
        return self._policies.get(agent_id, [])

    def refresh(self, agent_id: str) -> None:
        """At run start: fetch when the cache is stale; wait briefly only for the first answer."""
        now = time.monotonic()
        with self._lock:
            if self._due.get(agent_id, 0.0) > now:
                return
            done = self._inflight.get(agent_id)
            if done is None:
                done = self._inflight[agent_id] = threading.Event()
                first = agent_id not in self._policies
                self._due[agent_id] = now + CACHE_TTL_S  # one fetch at a time, whatever the answer
                threading.Thread(
                    target=self._fetch, args=(agent_id, done), name="dunetrace-policies", daemon=True
                ).start()
            else:
                first = agent_id not in self._policies
        if first:
            done.wait(self.first_wait)

    def _fetch(self, agent_id: str, done: threading.Event) -> None:
        try:
            policies = self._get(agent_id)
        except Exception as exc:  # any failure: keep what we had, try again soon
            with self._lock:
                self._due[agent_id] = time.monotonic() + RETRY_AFTER_FAILURE_S
                self._policies.setdefault(agent_id, [])
                warn, self._warned = not self._warned, True
            if warn:
                logger.warning(
                    "Dunetrace: could not fetch policies from %s (%s); using local policies only until it answers",
                    self.endpoint,
                    exc,
                )
        else:
            with self._lock:
                if policies != self._policies.get(agent_id):
                    self.generation += 1
                self._policies[agent_id] = policies
        finally:
            with self._lock:
                self._inflight.pop(agent_id, None)
            done.set()

    def _get(self, agent_id: str) -> list[Policy]:
        url = f"{self.endpoint}/v1/policies?{urllib.parse.urlencode({'agent_id': agent_id})}"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read(MAX_BODY))
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code}") from None
        policies = []
        for raw in (body or {}).get("policies") or []:
            try:
                policy_id = int(raw.get("id"))
                policy = parse_policy(
                    {k: v for k, v in raw.items() if k not in ("signature", "sig_version")}, policy_id
                )
            except (PolicyError, TypeError, ValueError, AttributeError) as exc:
                logger.debug("Dunetrace: skipped a policy the sidecar sent: %s", exc)
                continue
            if policy_id > 0 and policy.enabled:
                policies.append(policy)
        return policies


class PolicyBook:
    """The policies in force for this client: local first at equal priority, then the sidecar's."""

    def __init__(self, remote: RemotePolicies | None = None) -> None:
        self.remote = remote
        self._local: list[Policy] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._cache: dict[str, tuple[tuple[int, int], list[Policy]]] = {}

    def add(self, body: Mapping[str, Any]) -> Policy:
        with self._lock:
            policy = parse_policy(body, -(len(self._local) + 1))
            self._local.append(policy)
            self._generation += 1
        return policy

    def for_agent(self, agent_id: str) -> list[Policy]:
        """Enabled policies for the agent (its own and ``*``), in the order they are asked."""
        key = (self._generation, self.remote.generation if self.remote else 0)
        cached = self._cache.get(agent_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        remote = self.remote.policies(agent_id) if self.remote else []
        ranked = [(p.priority, 0, -p.id, p) for p in self._local] + [(p.priority, 1, p.id, p) for p in remote]
        ranked.sort(key=lambda r: r[:3])
        policies = [p for *_, p in ranked if p.enabled and p.agent_id in (agent_id, "*")]
        self._cache[agent_id] = (key, policies)
        return policies
