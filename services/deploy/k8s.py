"""deploy/k8s/: the ConfigMap, the migrate Job, the api, processors and dispatcher Deployments,
and one Deployment and Service per channel adapter that runs alone."""

# The templates keep the hand-written files' long lines (commands, probes) as they were.
# ruff: noqa: E501

from __future__ import annotations

from channels.base import Listener
from services.deploy.catalog import Process, Sources, Variable
from services.deploy.production import PRODUCTION
from services.deploy.text import GENERATED, comment, quoted

DIR = "deploy/k8s"


def render(sources: Sources) -> dict[str, str]:
    """Every manifest, by path from the repository root."""
    files = {
        f"{DIR}/config.yaml": config_map(sources),
        f"{DIR}/migrate-job.yaml": MIGRATE,
        f"{DIR}/api.yaml": api(sources),
        f"{DIR}/processors.yaml": PROCESSORS,
        f"{DIR}/dispatcher.yaml": DISPATCHER,
    }
    for process in sources.processes:
        files[channel_path(process)] = channel(process)
    head = "\n".join(comment(GENERATED)) + "\n"
    return {path: head + text for path, text in files.items()}


def channel_path(process: Process) -> str:
    return f"{DIR}/{process.service}.yaml"


#: Generated manifests of channel processes: any other file of this pattern is stale.
CHANNEL_GLOB = "channel-*.yaml"


def config_map(sources: Sources) -> str:
    """The omnihub-config ConfigMap: every variable that is not a secret."""
    secrets = [v for v in sources.variables.values() if v.secret]
    lines = comment(
        "Settings shared by every omnihub component: every variable that is not a secret, the "
        "production choices set (each with its reason), the others commented out at their "
        "defaults (docs/configuration-reference.md describes each)."
    )
    lines += comment(
        "Secrets are not here: they live in the Secret `omnihub-secrets`, created out of band, "
        "with the keys " + ", ".join(v.name for v in secrets) + " (set those you use):"
    )
    lines.append("#   kubectl create secret generic omnihub-secrets \\")
    for i, variable in enumerate(secrets):
        production = PRODUCTION.get(variable.name)
        sample = production.configmap if production and production.configmap else "<value>"
        more = " \\" if i < len(secrets) - 1 else ""
        lines.append(f"#     --from-literal={variable.name}='{sample}'{more}")
    lines += [
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: omnihub-config",
        "  labels: {app.kubernetes.io/name: omnihub}",
        "data:",
    ]
    indent = "  "
    for section in sources.sections:
        lines += comment(
            f"--- {section.title} ({section.source}), read by {section.reader}", indent=indent
        )
        for variable in section.variables:
            if sources.home(variable) is not variable or variable.secret:
                continue
            production = PRODUCTION.get(variable.name)
            if production is None:
                lines.append(_commented(variable, indent))
            elif production.image is not None:
                lines += comment(
                    f"{variable.name}: set by the image ({production.image}): {production.reason}.",
                    indent=indent,
                )
            elif production.per_process:
                lines += comment(
                    f"{variable.name}: set per Deployment: {production.reason}.",
                    indent=indent,
                )
            elif production.configmap is not None:
                lines += comment(_sentence(production.reason), indent=indent)
                lines.append(f"{indent}{variable.name}: {quoted(production.configmap)}")
            else:
                lines.append(_commented(variable, indent))
    return "\n".join(lines) + "\n"


def _commented(variable: Variable, indent: str) -> str:
    """A ConfigMap key commented out at its default."""
    if variable.default is None:
        return f"{indent}# {variable.name}:   # unset by default"
    return f"{indent}# {variable.name}: {quoted(variable.env_default)}"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def api(sources: Sources) -> str:
    """The api Deployment and Service, serving the adapters without a process of their own."""
    env = "\n".join(
        [
            "          env:",
            *comment(
                "The adapters without a process of their own (channel-*.yaml serve the others).",
                indent="            ",
            ),
            f"            - {{name: OMNIHUB_CHANNELS, value: {quoted(sources.api_channels)}}}",
        ]
    )
    return API.replace("@ENV@", env)


def channel(process: Process) -> str:
    """The Deployment and Service of one channel process."""
    replicas, why = process.replicas
    title = " ".join(process.manifest.title.split())
    return CHANNEL.format(
        intro="\n".join(
            comment(
                f"{title}. `omnihub run channel {process.name}` serves this adapter alone (its "
                f"routes under /channels/{process.name}/): it receives with Kafka alone, and "
                "uses PostgreSQL where it keeps something (client sessions' replies and "
                "conversation log, IMAP's place). Route "
                f"<OMNIHUB_PUBLIC_URL>/channels/{process.name}/ to the Service below. Liveness "
                "/healthz, readiness /readyz (Kafka reachable; the body reports the adapter's "
                "health), Prometheus metrics on /metrics."
            )
        ),
        service=process.service,
        name=process.name,
        replicas=replicas,
        why=why,
        **listener_parts(process.manifest.listeners),
    )


def listener_parts(listeners: tuple[Listener, ...]) -> dict[str, str]:
    """The container ports, environment and Service ports of a channel's other listeners
    (every interface inside the pod; the Service exposes each on its own port)."""
    env = "".join(
        f"\n            - {{name: {item.host_setting}, value: 0.0.0.0}}"
        f'\n            - {{name: {item.port_setting}, value: "{item.port}"}}'
        for item in listeners
    )
    return {
        "listener_ports": "".join(
            f"\n            - {{name: {item.name}, containerPort: {item.port}}}"
            for item in listeners
        ),
        "listener_env": f"\n          env:{env}" if listeners else "",
        "service_ports": "".join(
            f"\n    - {{name: {item.name}, port: {item.port}, targetPort: {item.name}}}"
            for item in listeners
        ),
    }


MIGRATE = """\
# Applies the database migrations and creates the topics (schemas/topics.py). Run it before the
# first rollout and after each upgrade; Jobs are immutable, so delete the old one first:
#   kubectl delete job omnihub-migrate --ignore-not-found
#   kubectl apply -f deploy/k8s/migrate-job.yaml
#   kubectl wait --for=condition=complete --timeout=300s job/omnihub-migrate
apiVersion: batch/v1
kind: Job
metadata:
  name: omnihub-migrate
  labels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: migrate}
spec:
  backoffLimit: 4
  ttlSecondsAfterFinished: 86400
  template:
    metadata:
      labels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: migrate}
    spec:
      restartPolicy: OnFailure
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      containers:
        - name: migrate
          image: omnihub:0.1.0   # your registry's omnihub image, built from deploy/Dockerfile
          args: ["migrate"]
          envFrom:
            - configMapRef: {name: omnihub-config}
            - secretRef: {name: omnihub-secrets}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}
          volumeMounts:
            - {name: data, mountPath: /var/lib/omnihub}
            - {name: tmp, mountPath: /tmp}
          resources:
            requests: {cpu: 50m, memory: 128Mi}
            limits: {memory: 256Mi}
      volumes:
        - {name: data, emptyDir: {}}
        - {name: tmp, emptyDir: {}}
"""

API = """\
# The HTTP API: stateless, scale freely. Liveness /healthz, readiness /readyz (PostgreSQL and
# Kafka reachable), Prometheus metrics on /metrics.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: omnihub-api
  labels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: api}
spec:
  replicas: 2
  selector:
    matchLabels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: api}
  template:
    metadata:
      labels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: api}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8080"
        prometheus.io/path: /metrics
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      containers:
        - name: api
          image: omnihub:0.1.0
          args: ["run", "api"]
          ports:
            - {name: http, containerPort: 8080}
          envFrom:
            - configMapRef: {name: omnihub-config}
            - secretRef: {name: omnihub-secrets}
@ENV@
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 2
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 30
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}
          volumeMounts:
            - {name: data, mountPath: /var/lib/omnihub}
            - {name: tmp, mountPath: /tmp}
          resources:
            requests: {cpu: 100m, memory: 192Mi}
            limits: {memory: 512Mi}
      volumes:
        - {name: data, emptyDir: {}}
        - {name: tmp, emptyDir: {}}
---
apiVersion: v1
kind: Service
metadata:
  name: omnihub-api
  labels: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: api}
spec:
  selector: {app.kubernetes.io/name: omnihub, app.kubernetes.io/component: api}
  ports:
    - {name: http, port: 80, targetPort: http}
"""

WORKER = """\
{intro}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: omnihub-{name}
  labels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {name}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {name}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {name}}}
    spec:
      terminationGracePeriodSeconds: {grace}
      securityContext: {{runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}}
      containers:
        - name: {name}
          image: omnihub:0.1.0
          args: ["run", "{name}"]
          envFrom:
            - configMapRef: {{name: omnihub-config}}
            - secretRef: {{name: omnihub-secrets}}
          # Ready once the worker has joined its consumer group: it keeps the marker
          # /var/lib/omnihub/ready/omnihub-{name}.<pid> from its first completed rebalance until shutdown.
          readinessProbe:
            exec:
              command:
                - python
                - -c
                - "import glob, sys; sys.exit(not glob.glob('/var/lib/omnihub/ready/omnihub-{name}.*'))"
            periodSeconds: 10
            timeoutSeconds: 5
          securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}}
          volumeMounts:
            - {{name: data, mountPath: /var/lib/omnihub}}
            - {{name: tmp, mountPath: /tmp}}
          resources:
            requests: {{cpu: {cpu}, memory: {memory}}}
            limits: {{memory: {limit}}}
      volumes:
        - {{name: data, emptyDir: {{}}}}
        - {{name: tmp, emptyDir: {{}}}}
"""

PROCESSORS = WORKER.format(
    intro="""\
# The faust worker with the unify, project and delivery agents (consumer group
# omnihub-processors). Topics have 8 partitions, so up to 8 replicas share the load; more sit
# idle. No HTTP endpoint (faust's web server is disabled): Kubernetes restarts it when it exits,
# and the readiness probe shows whether it has joined its consumer group.""",
    name="processors",
    replicas="2",
    grace="30   # faust stops on SIGTERM and leaves the group",
    cpu="250m",
    memory="256Mi",
    limit="768Mi",
)

DISPATCHER = WORKER.format(
    intro="""\
# The faust worker that sends outbound commands through the channel adapters (consumer group
# omnihub-dispatcher). omnihub.outbound.v1 has 8 partitions: up to 8 replicas share the load.""",
    name="dispatcher",
    replicas="1",
    grace="60   # a callback may be retrying with back-off",
    cpu="100m",
    memory="192Mi",
    limit="512Mi",
)

CHANNEL = """\
{intro}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: omnihub-{service}
  labels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {service}}}
spec:
  replicas: {replicas}   # {why}
  selector:
    matchLabels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {service}}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {service}}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8080"
        prometheus.io/path: /metrics
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}}
      containers:
        - name: {service}
          image: omnihub:0.1.0
          args: ["run", "channel", "{name}"]
          ports:
            - {{name: http, containerPort: 8080}}{listener_ports}
          envFrom:
            - configMapRef: {{name: omnihub-config}}
            - secretRef: {{name: omnihub-secrets}}{listener_env}
          livenessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 2
          startupProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 2
            failureThreshold: 30
          securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}}
          volumeMounts:
            - {{name: data, mountPath: /var/lib/omnihub}}
            - {{name: tmp, mountPath: /tmp}}
          resources:
            requests: {{cpu: 50m, memory: 128Mi}}
            limits: {{memory: 384Mi}}
      volumes:
        - {{name: data, emptyDir: {{}}}}
        - {{name: tmp, emptyDir: {{}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: omnihub-{service}
  labels: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {service}}}
spec:
  selector: {{app.kubernetes.io/name: omnihub, app.kubernetes.io/component: {service}}}
  ports:
    - {{name: http, port: 80, targetPort: http}}{service_ports}
"""
