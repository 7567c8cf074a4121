#!/usr/bin/env python3
"""Renders the Deadbolt chart with `helm template` for a table of scenarios and
checks the manifests against what the project promises: the operator's RBAC is
exactly docs/rbac.md (plus get/patch on the chart's own webhook configurations
when the operator fills their caBundle), only the operator may read the
`deadbolt-ca` Secret, the webhooks have the right rules, paths, matchConditions
and failure policies, the pods run under the restricted Pod Security profile,
and optional parts (cert-manager, kube-API proxy, injection, NetworkPolicy,
ServiceMonitor, ClusterAuthPreference) appear exactly when asked for.

Usage: check_rendered.py [--helm PATH] [--chart DIR] [--namespace NS] [SCENARIO...]

Needs PyYAML (Debian: python3-yaml) to read helm's YAML output.
"""
import argparse
import os
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - scripts/test-chart.sh installs it first
    sys.exit("check_rendered.py needs PyYAML (apt-get install python3-yaml, or pip install pyyaml)")

class Failures(Exception):
    pass


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if duplicates:
            raise Failures("duplicate keys %s %s" % (duplicates, node.start_mark))
        return super().construct_mapping(node, deep=deep)


HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.dirname(HERE)
NS = "deadbolt-system"
RELEASE = "deadbolt"

OPERATOR = "deadbolt-operator"
KUBE_PROXY = "deadbolt-kube-proxy"
VALIDATING = "deadbolt-validating"
MUTATING = "deadbolt-mutating"
SERVING_CERT = "deadbolt-operator-tls"
CA_SECRET = "deadbolt-ca"
LEASE = "deadbolt-operator"
OPERATOR_SA = "deadbolt-operator"
IMAGE = "ghcr.io/deadbolt-dev/deadbolt"
CONTROL_PLANE = ("!(request.userInfo.username.startsWith('system:') && "
                 "!request.userInfo.username.startsWith('system:serviceaccount:'))")
INJECT_CONDITION = "has(object.metadata.annotations) && 'deadbolt.dev/inject' in object.metadata.annotations"

# ---------------------------------------------------------------- the RBAC tables
# (apiGroups, resources, verbs, resourceNames): docs/rbac.md, deadbolt-operator.
OPERATOR_CLUSTER_RULES = [
    (["deadbolt.dev"], ["locks"], ["get", "list", "watch", "create", "patch", "delete"], []),
    (["deadbolt.dev"], ["locks/status", "users/status", "accessroles/status", "clusterauthpreferences/status"],
     ["patch"], []),
    (["deadbolt.dev"], ["users"], ["list", "watch", "delete"], []),
    (["deadbolt.dev"], ["accessroles", "clusterauthpreferences"], ["list", "watch"], []),
    (["deadbolt.dev"], ["mfadevices"], ["list", "create", "delete"], []),
    (["deadbolt.dev"], ["mfadevices/status"], ["patch"], []),
    (["authentication.k8s.io"], ["tokenreviews"], ["create"], []),
]
# Only when the operator patches caBundle itself (cert-manager off).
OPERATOR_WEBHOOK_RULES = [
    (["admissionregistration.k8s.io"], ["validatingwebhookconfigurations"], ["get", "patch"], [VALIDATING]),
    (["admissionregistration.k8s.io"], ["mutatingwebhookconfigurations"], ["get", "patch"], [MUTATING]),
]
OPERATOR_NAMESPACE_RULES = [
    (["coordination.k8s.io"], ["leases"], ["get", "patch"], [LEASE]),
    (["coordination.k8s.io"], ["leases"], ["create", "list", "patch", "delete"], []),
    ([""], ["serviceaccounts"], ["get"], [OPERATOR_SA]),
    ([""], ["secrets"], ["get"], [CA_SECRET]),
    ([""], ["secrets"], ["create"], []),
]
OPERATOR_EVENTS_RULES = [
    (["events.k8s.io"], ["events"], ["create", "patch"], []),
]
LOCKSMITH_RULES = [
    (["deadbolt.dev"], ["locks"], ["get", "list", "watch", "create", "update", "patch", "delete"], []),
    (["deadbolt.dev"], ["locks/status", "users", "accessroles"], ["get", "list", "watch"], []),
]
VIEWER_RULES = [
    (["deadbolt.dev"], ["locks", "users", "accessroles", "clusterauthpreferences", "mfadevices"],
     ["get", "list", "watch"], []),
]
KUBE_PROXY_RULES = [
    ([""], ["users", "groups", "serviceaccounts"], ["impersonate"], []),
    (["authentication.k8s.io"], ["userextras/deadbolt.dev/session-id", "userextras/deadbolt.dev/mfa-device",
                                 "userextras/deadbolt.dev/device", "userextras/deadbolt.dev/access-request"],
     ["impersonate"], []),
    (["authentication.k8s.io"], ["tokenreviews"], ["create"], []),
]

# ---------------------------------------------------------------- scenarios
DEFAULTS = dict(cert_manager=False, kube_proxy=False, injection=True, enforcement="Ignore",
                network_policy=True, exempt_users=[], exempt_groups=["system:serviceaccounts:kube-system"],
                subscribers=[], service_monitor=False, cap=None, locksmith_groups=[], retention=None)


def scenario(args, **expect):
    merged = dict(DEFAULTS)
    merged.update(expect)
    return args, merged


SCENARIOS = {
    "default": scenario([]),
    "ci/cert-manager-values.yaml": scenario(
        ["-f", "ci/cert-manager-values.yaml"], cert_manager=True, enforcement="Fail", service_monitor=True,
        cap={"lockingMode": "strict", "maxLockStaleness": "15s"}),
    "ci/kube-proxy-values.yaml": scenario(
        ["-f", "ci/kube-proxy-values.yaml"], kube_proxy=True, locksmith_groups=["security-team"],
        subscribers=["databases/orders-db=orders-db-*", NS + "/" + KUBE_PROXY + "=kube-api"]),
    "ci/no-injection-values.yaml": scenario(
        ["-f", "ci/no-injection-values.yaml"], injection=False, network_policy=False, retention="168h",
        exempt_users=["break-glass@example.com"],
        exempt_groups=["system:serviceaccounts:kube-system", "platform-admins"]),
    "lockingMode=strict": scenario(["--set", "lockingMode=strict"], enforcement="Fail"),
    "lockingMode=strict, enforcement=Ignore": scenario(
        ["--set", "lockingMode=strict", "--set", "webhooks.failurePolicy.enforcement=Ignore"], enforcement="Ignore"),
    "lockingMode=best_effort, enforcement=Fail": scenario(
        ["--set", "webhooks.failurePolicy.enforcement=Fail"], enforcement="Fail"),
    "cert-manager + kube-proxy": scenario(
        ["-f", "ci/cert-manager-values.yaml", "-f", "ci/kube-proxy-values.yaml"], cert_manager=True,
        kube_proxy=True, enforcement="Fail", service_monitor=True, locksmith_groups=["security-team"],
        cap={"lockingMode": "strict", "maxLockStaleness": "15s"},
        subscribers=["databases/orders-db=orders-db-*", NS + "/" + KUBE_PROXY + "=kube-api"]),
}


# ---------------------------------------------------------------- helpers
class Checker:
    def __init__(self, name):
        self.name = name
        self.errors = []
        self.checks = 0

    def ok(self, condition, message):
        self.checks += 1
        if not condition:
            self.errors.append(message)
        return condition

    def eq(self, actual, expected, message):
        return self.ok(actual == expected, "%s: got %r, want %r" % (message, actual, expected))


def expand(rules):
    """The permission tuples (group, resource, verb, name-or-*) a list of rules grants."""
    out = set()
    for rule in rules:
        if isinstance(rule, tuple):
            groups, resources, verbs, names = rule
        else:
            groups = rule.get("apiGroups") or []
            resources = rule.get("resources") or []
            verbs = rule.get("verbs") or []
            names = rule.get("resourceNames") or []
        for g in groups:
            for r in resources:
                for v in verbs:
                    for n in (names or ["*"]):
                        out.add((g, r, v, n))
    return out


def same_permissions(c, rules, want, what):
    got, want = expand(rules or []), expand(want)
    return c.ok(got == want, "%s: extra %s, missing %s" % (what, sorted(got - want), sorted(want - got)))


def render(helm, chart, args):
    cmd = [helm, "template", RELEASE, chart, "--namespace", NS] + args
    result = subprocess.run(cmd, cwd=chart, capture_output=True, text=True)
    if result.returncode != 0:
        raise Failures("helm template failed: %s\n%s" % (" ".join(cmd), result.stderr))
    docs = [d for d in yaml.load_all(result.stdout, Loader=UniqueKeyLoader) if d]
    return docs


def index(docs, c):
    objects = {}
    for d in docs:
        meta = d.get("metadata") or {}
        key = (d.get("kind"), meta.get("namespace"), meta.get("name"))
        c.ok(key not in objects, "duplicate object %s" % (key,))
        objects[key] = d
    return objects


def get(objects, kind, name, namespace=None):
    return objects.get((kind, namespace, name))


def container_args(container):
    return list(container.get("args") or [])


def flag_values(args, flag):
    prefix = flag + "="
    return [a[len(prefix):] for a in args if a.startswith(prefix)]


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


# ---------------------------------------------------------------- checks
def check_rbac(objects, e, c):
    cluster_role = get(objects, "ClusterRole", OPERATOR)
    if c.ok(cluster_role is not None, "ClusterRole %s missing" % OPERATOR):
        want = OPERATOR_CLUSTER_RULES + ([] if e["cert_manager"] else OPERATOR_WEBHOOK_RULES)
        same_permissions(c, cluster_role.get("rules"), want, "ClusterRole " + OPERATOR)
    role = get(objects, "Role", OPERATOR, NS)
    if c.ok(role is not None, "Role %s/%s missing" % (NS, OPERATOR)):
        same_permissions(c, role.get("rules"), OPERATOR_NAMESPACE_RULES, "Role %s/%s" % (NS, OPERATOR))
    events = get(objects, "Role", OPERATOR + "-events", "default")
    if c.ok(events is not None, "Role default/%s-events missing" % OPERATOR):
        same_permissions(c, events.get("rules"), OPERATOR_EVENTS_RULES, "Role default/%s-events" % OPERATOR)

    operator_sa = {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NS}
    for kind, name, namespace, role_kind in [
            ("ClusterRoleBinding", OPERATOR, None, "ClusterRole"),
            ("RoleBinding", OPERATOR, NS, "Role"),
            ("RoleBinding", OPERATOR + "-events", "default", "Role")]:
        binding = get(objects, kind, name, namespace)
        if c.ok(binding is not None, "%s %s missing" % (kind, name)):
            c.eq(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
                 "%s %s roleRef" % (kind, name))
            c.eq(binding["subjects"], [operator_sa], "%s %s subjects" % (kind, name))
    c.ok(get(objects, "ServiceAccount", OPERATOR, NS) is not None, "ServiceAccount %s missing" % OPERATOR)

    locksmith = get(objects, "ClusterRole", "deadbolt-locksmith")
    viewer = get(objects, "ClusterRole", "deadbolt-viewer")
    for role, rules, label in [(locksmith, LOCKSMITH_RULES, "rbac.authorization.k8s.io/aggregate-to-admin"),
                               (viewer, VIEWER_RULES, "rbac.authorization.k8s.io/aggregate-to-view")]:
        if c.ok(role is not None, "aggregated ClusterRole missing (%s)" % label):
            name = role["metadata"]["name"]
            same_permissions(c, role["rules"], rules, "ClusterRole " + name)
            c.eq(role["metadata"]["labels"].get(label), "true", "%s label %s" % (name, label))
    binding = get(objects, "ClusterRoleBinding", "deadbolt-locksmith")
    if e["locksmith_groups"]:
        if c.ok(binding is not None, "ClusterRoleBinding deadbolt-locksmith missing"):
            c.eq([s["name"] for s in binding["subjects"]], e["locksmith_groups"], "locksmith groups")
            c.eq(binding["roleRef"]["name"], "deadbolt-locksmith", "locksmith binding roleRef")
    else:
        c.ok(binding is None, "ClusterRoleBinding deadbolt-locksmith rendered without rbac.locksmithGroups")

    kube_proxy_role = get(objects, "ClusterRole", KUBE_PROXY)
    if e["kube_proxy"]:
        if c.ok(kube_proxy_role is not None, "ClusterRole %s missing" % KUBE_PROXY):
            same_permissions(c, kube_proxy_role["rules"], KUBE_PROXY_RULES, "ClusterRole " + KUBE_PROXY)
        b = get(objects, "ClusterRoleBinding", KUBE_PROXY)
        if c.ok(b is not None, "ClusterRoleBinding %s missing" % KUBE_PROXY):
            c.eq(b["subjects"], [{"kind": "ServiceAccount", "name": KUBE_PROXY, "namespace": NS}],
                 "kube proxy binding subjects")
    else:
        c.ok(kube_proxy_role is None, "kube proxy ClusterRole rendered while kubeProxy.enabled is false")

    # Secrets: nothing but the operator's Role may touch them, and it may only
    # get deadbolt-ca (and create, which resourceNames cannot restrict). No
    # wildcard anywhere, and nothing aggregates Secrets.
    for (kind, namespace, name), obj in sorted(objects.items(), key=lambda kv: str(kv[0])):
        if kind not in ("Role", "ClusterRole"):
            continue
        for rule in obj.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs"):
                c.ok("*" not in (rule.get(field) or []), "%s %s has a wildcard in %s" % (kind, name, field))
            if "" in (rule.get("apiGroups") or []) and "secrets" in (rule.get("resources") or []):
                is_operator_role = (kind, namespace, name) == ("Role", NS, OPERATOR)
                c.ok(is_operator_role, "%s %s grants access to secrets" % (kind, name))
                verbs = set(rule.get("verbs") or [])
                if "get" in verbs:
                    c.eq(rule.get("resourceNames"), [CA_SECRET], "secrets get must be limited to deadbolt-ca")
                c.ok(verbs <= {"get", "create"}, "secrets verbs %s" % sorted(verbs))
                if "create" in verbs:
                    c.ok(verbs == {"create"}, "secrets create must be a rule of its own")
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in labels):
            granted = expand(obj.get("rules") or [])
            c.ok(not any(r == "secrets" for _, r, _, _ in granted), "%s aggregates secrets" % name)


def check_security(pod_spec, what, c):
    sc = pod_spec.get("securityContext") or {}
    c.eq(sc.get("runAsNonRoot"), True, what + " pod runAsNonRoot")
    c.eq(sc.get("runAsUser"), 65532, what + " pod runAsUser")
    c.eq((sc.get("seccompProfile") or {}).get("type"), "RuntimeDefault", what + " pod seccompProfile")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        c.ok(not pod_spec.get(key), "%s sets %s" % (what, key))
    for volume in pod_spec.get("volumes") or []:
        c.ok("hostPath" not in volume, "%s mounts a hostPath" % what)
    for container in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        csc = container.get("securityContext") or {}
        name = "%s container %s" % (what, container.get("name"))
        c.eq(csc.get("allowPrivilegeEscalation"), False, name + " allowPrivilegeEscalation")
        c.eq(csc.get("readOnlyRootFilesystem"), True, name + " readOnlyRootFilesystem")
        c.eq(csc.get("runAsNonRoot"), True, name + " runAsNonRoot")
        c.eq(csc.get("runAsUser"), 65532, name + " runAsUser")
        c.eq((csc.get("capabilities") or {}).get("drop"), ["ALL"], name + " capabilities.drop")
        c.ok(not (csc.get("capabilities") or {}).get("add"), name + " adds capabilities")
        c.ok(not csc.get("privileged"), name + " is privileged")
        c.eq((csc.get("seccompProfile") or {}).get("type"), "RuntimeDefault", name + " seccompProfile")


def check_probes(container, port, what, c):
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http = ((container.get(probe) or {}).get("httpGet")) or {}
        c.eq(http.get("path"), path, "%s %s path" % (what, probe))
        c.eq(port_number(container, http.get("port")), port, "%s %s port" % (what, probe))
        c.eq(http.get("scheme", "HTTP"), "HTTP", "%s %s scheme" % (what, probe))


def mounted_secret(pod_spec, container, path):
    """The Secret a file path in the container comes from, or None."""
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            secret = volumes.get(mount["name"], {}).get("secret")
            return secret and secret.get("secretName")
    return None


def check_operator(objects, e, chart_meta, c):
    deployment = get(objects, "Deployment", OPERATOR, NS)
    if not c.ok(deployment is not None, "operator Deployment missing"):
        return
    spec = deployment["spec"]
    c.eq(spec.get("replicas"), 2, "operator replicas")
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    c.ok(all(pod_labels.get(k) == v for k, v in selector.items()), "operator selector does not match its pods")
    c.eq(pod.get("serviceAccountName"), OPERATOR, "operator serviceAccountName")
    check_security(pod, "operator", c)
    spread = pod.get("topologySpreadConstraints") or []
    c.ok(any(t.get("topologyKey") == "kubernetes.io/hostname" and t.get("whenUnsatisfiable") == "ScheduleAnyway"
             and t.get("labelSelector", {}).get("matchLabels") == selector for t in spread),
         "operator topologySpreadConstraints (ScheduleAnyway on kubernetes.io/hostname)")
    containers = pod["containers"]
    c.eq(len(containers), 1, "operator containers")
    container = containers[0]
    c.eq(container.get("image"), "%s:%s" % (IMAGE, chart_meta["appVersion"]), "operator image")
    c.eq(container.get("imagePullPolicy"), "IfNotPresent", "operator imagePullPolicy")
    c.eq({p["name"]: p["containerPort"] for p in container.get("ports") or []},
         {"lockview": 8443, "mfa": 8444, "webhook": 9443, "metrics": 9090}, "operator ports")
    check_probes(container, 9090, "operator", c)
    resources = container.get("resources") or {}
    c.ok(resources.get("requests") and resources.get("limits", {}).get("memory"), "operator resources")
    env = {v["name"]: v for v in container.get("env") or []}
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        c.eq(((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath"), field,
             "operator env %s" % name)
    args = container_args(container)
    c.ok("--leader-election=true" in args, "operator runs without --leader-election=true")
    c.eq(flag_values(args, "--service-name"), [OPERATOR], "--service-name")
    c.eq(flag_values(args, "--service-account"), [OPERATOR], "--service-account")
    if e["cert_manager"]:
        for kind in ("validating", "mutating"):
            flag = "--%s-webhook-configuration" % kind
            c.eq(flag_values(args, flag), [], flag + " with cert-manager")
        c.eq(flag_values(args, "--tls-cert"), ["/etc/deadbolt/tls/tls.crt"], "--tls-cert")
        c.eq(flag_values(args, "--tls-key"), ["/etc/deadbolt/tls/tls.key"], "--tls-key")
        for path in ("/etc/deadbolt/tls/tls.crt", "/etc/deadbolt/tls/tls.key"):
            c.eq(mounted_secret(pod, container, path), SERVING_CERT, "Secret behind " + path)
    else:
        c.eq(flag_values(args, "--validating-webhook-configuration"), [VALIDATING], "--validating-webhook-configuration")
        c.eq(flag_values(args, "--mutating-webhook-configuration"), [MUTATING], "--mutating-webhook-configuration")
        c.eq(flag_values(args, "--tls-cert"), [], "--tls-cert without cert-manager")
    c.eq(flag_values(args, "--subscriber"), e["subscribers"], "--subscriber")
    if e["injection"]:
        c.eq(flag_values(args, "--inject-image"), ["%s:%s" % (IMAGE, chart_meta["appVersion"])], "--inject-image")
        c.eq(flag_values(args, "--inject-view-url"), ["https://%s.%s.svc:8443" % (OPERATOR, NS)], "--inject-view-url")
    else:
        c.eq(flag_values(args, "--inject-image"), [], "--inject-image without injection")
    c.eq(flag_values(args, "--lock-exempt-user"), e["exempt_users"], "--lock-exempt-user")
    c.eq(flag_values(args, "--lock-exempt-group"), e["exempt_groups"], "--lock-exempt-group")
    c.eq(flag_values(args, "--expired-lock-retention"), [e["retention"]] if e["retention"] else [],
         "--expired-lock-retention")

    pdb = get(objects, "PodDisruptionBudget", OPERATOR, NS)
    if c.ok(pdb is not None, "operator PodDisruptionBudget missing"):
        c.eq(pdb["spec"].get("minAvailable"), 1, "PDB minAvailable")
        c.eq(pdb["spec"]["selector"]["matchLabels"], selector, "PDB selector")

    service = get(objects, "Service", OPERATOR, NS)
    if c.ok(service is not None, "operator Service missing"):
        c.eq(service["spec"]["selector"], selector, "Service selector")
        c.eq({p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]},
             {"lockview": (8443, "lockview"), "mfa": (8444, "mfa"), "webhook": (443, "webhook"),
              "metrics": (9090, "metrics")},
             "Service ports")


def webhook_by_name(configuration):
    return {w["name"]: w for w in configuration.get("webhooks") or []}


def check_webhooks(objects, e, c):
    validating = get(objects, "ValidatingWebhookConfiguration", VALIDATING)
    mutating = get(objects, "MutatingWebhookConfiguration", MUTATING)
    if not (c.ok(validating is not None, "%s missing" % VALIDATING)
            and c.ok(mutating is not None, "%s missing" % MUTATING)):
        return
    v, m = webhook_by_name(validating), webhook_by_name(mutating)
    c.eq(sorted(v), ["enforce-locks.deadbolt.dev", "validate.deadbolt.dev"], "validating webhooks")
    c.eq(sorted(m), sorted(["mutate-locks.deadbolt.dev"] + (["inject.deadbolt.dev"] if e["injection"] else [])),
         "mutating webhooks")
    all_hooks = dict(v)
    all_hooks.update(m)
    expected = {
        "validate.deadbolt.dev": ("/validate/deadbolt", "Fail", [
            {"apiGroups": ["deadbolt.dev"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["users", "locks"], "scope": "Cluster"}]),
        "enforce-locks.deadbolt.dev": ("/validate/locks-enforcement", e["enforcement"], [
            {"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE", "DELETE"],
             "resources": ["*/*"], "scope": "*"},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CONNECT"],
             "resources": ["pods/exec", "pods/attach", "pods/portforward"], "scope": "Namespaced"}]),
        "mutate-locks.deadbolt.dev": ("/mutate/locks", "Fail", [
            {"apiGroups": ["deadbolt.dev"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["locks"], "scope": "Cluster"}]),
        "inject.deadbolt.dev": ("/mutate/pods", "Fail", [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
             "scope": "Namespaced"}]),
    }
    for name, hook in all_hooks.items():
        path, policy, rules = expected[name]
        c.eq(hook["clientConfig"].get("service"), {"name": OPERATOR, "namespace": NS, "path": path, "port": 443},
             name + " clientConfig.service")
        c.ok("caBundle" not in hook["clientConfig"] and "url" not in hook["clientConfig"],
             name + " must leave caBundle to the operator or cert-manager")
        c.eq(hook.get("failurePolicy"), policy, name + " failurePolicy")
        c.eq(hook.get("rules"), rules, name + " rules")
        c.eq(hook.get("sideEffects"), "None", name + " sideEffects")
        c.eq(hook.get("admissionReviewVersions"), ["v1"], name + " admissionReviewVersions")
        c.eq(hook.get("timeoutSeconds"), 5, name + " timeoutSeconds")
        conditions = {mc["name"]: mc["expression"] for mc in hook.get("matchConditions") or []}
        c.eq(conditions.get("not-control-plane"), CONTROL_PLANE, name + " control-plane exemption")
    # The enforcement webhook's exemptions.
    enforce = {mc["name"]: mc["expression"] for mc in v["enforce-locks.deadbolt.dev"]["matchConditions"]}
    c.eq(enforce.get("not-deadbolt-operator"),
         "request.userInfo.username != 'system:serviceaccount:%s:%s'" % (NS, OPERATOR), "operator exemption")
    for key, values in (("not-exempt-user", e["exempt_users"]), ("not-exempt-group", e["exempt_groups"])):
        if values:
            c.ok(key in enforce and all('"%s"' % x in enforce[key] for x in values),
                 "%s should name %s: %r" % (key, values, enforce.get(key)))
        else:
            c.ok(key not in enforce, "%s rendered without values" % key)
    if e["enforcement"] == "Fail":
        install = enforce.get("not-deadbolt-install", "")
        c.ok("sh.helm.release.v1.%s.v" % RELEASE in install, "Fail needs the Helm release-record exemption")
        if e["cert_manager"]:
            c.ok("cert-manager.io/certificates/%s/%s" % (NS, SERVING_CERT) in install,
                 "Fail with cert-manager needs the serving Certificate exempt during install")
        if e["cap"]:
            c.ok("deadbolt.dev/clusterauthpreferences//cluster-auth-preference" in install,
                 "Fail needs the chart's ClusterAuthPreference exempt during install")
    else:
        c.ok("not-deadbolt-install" not in enforce, "install exemption rendered with Ignore")
    c.eq(set(enforce) - {"not-control-plane", "not-deadbolt-operator", "not-exempt-user", "not-exempt-group",
                         "not-deadbolt-install"}, set(), "unexpected enforcement matchConditions")
    for name in ("validate.deadbolt.dev", "mutate-locks.deadbolt.dev"):
        c.eq([mc["name"] for mc in all_hooks[name]["matchConditions"]], ["not-control-plane"],
             name + " matchConditions")
    if e["injection"]:
        inject = {mc["name"]: mc["expression"] for mc in m["inject.deadbolt.dev"]["matchConditions"]}
        c.eq(inject, {"not-control-plane": CONTROL_PLANE, "asks-for-injection": INJECT_CONDITION},
             "inject matchConditions")
    for configuration in (validating, mutating):
        annotations = configuration["metadata"].get("annotations") or {}
        if e["cert_manager"]:
            c.eq(annotations.get("cert-manager.io/inject-ca-from"), "%s/%s" % (NS, SERVING_CERT),
                 configuration["metadata"]["name"] + " inject-ca-from")
        else:
            c.ok("cert-manager.io/inject-ca-from" not in annotations,
                 configuration["metadata"]["name"] + " has inject-ca-from without cert-manager")


def check_cert_manager(objects, e, c):
    cm = {k: o for k, o in objects.items() if (o.get("apiVersion") or "").startswith("cert-manager.io/")}
    if not e["cert_manager"]:
        c.eq(sorted(cm), [], "cert-manager objects without certManager.enabled")
        return
    cert = get(objects, "Certificate", SERVING_CERT, NS)
    if c.ok(cert is not None, "serving Certificate missing"):
        c.eq(cert["spec"]["secretName"], SERVING_CERT, "serving Certificate secretName")
        names = cert["spec"]["dnsNames"]
        for n in (OPERATOR + "." + NS + ".svc", OPERATOR + "." + NS + ".svc.cluster.local"):
            c.ok(n in names, "serving Certificate lacks %s" % n)
        issuer = cert["spec"]["issuerRef"]
        c.ok(get(objects, issuer["kind"], issuer["name"], NS) is not None, "serving Certificate's issuer missing")
    c.ok(get(objects, "Issuer", "deadbolt-selfsigned", NS) is not None, "self-signed Issuer missing")
    c.ok(get(objects, "Certificate", "deadbolt-serving-ca", NS) is not None, "CA Certificate missing")
    if e["kube_proxy"]:
        c.ok(get(objects, "Certificate", "deadbolt-kube-proxy-tls", NS) is not None,
             "kube proxy Certificate missing")


def check_kube_proxy(objects, e, c):
    names = [k for k in objects if k[2] and k[2].startswith(KUBE_PROXY) and k[0] != "Certificate"]
    if not e["kube_proxy"]:
        c.eq(names, [], "kube proxy objects without kubeProxy.enabled")
        return
    deployment = get(objects, "Deployment", KUBE_PROXY, NS)
    if not c.ok(deployment is not None, "kube proxy Deployment missing"):
        return
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    c.eq(labels.get("deadbolt.dev/proxy"), "true", "kube proxy pod label deadbolt.dev/proxy")
    c.eq(pod.get("serviceAccountName"), KUBE_PROXY, "kube proxy serviceAccountName")
    check_security(pod, "kube proxy", c)
    container = pod["containers"][0]
    c.eq(container.get("command"), ["/usr/local/bin/deadbolt-sidecar"], "kube proxy command")
    args = container_args(container)
    c.eq(args[:1], ["kube"], "kube proxy subcommand")
    c.eq(flag_values(args, "--listen"), ["0.0.0.0:8443"], "kube proxy --listen")
    c.eq(flag_values(args, "--server-id"), ["kube-api"], "kube proxy --server-id")
    c.eq(flag_values(args, "--view-url"), ["https://%s.%s.svc:8443" % (OPERATOR, NS)], "kube proxy --view-url")
    c.ok("--token-review" in args, "kube proxy without --token-review")
    c.ok(not any(a.startswith("--upstream-kubeconfig") for a in args), "kube proxy must use in-cluster upstream")
    for flag, path in (("--tls-cert", "/etc/deadbolt/tls/tls.crt"), ("--tls-key", "/etc/deadbolt/tls/tls.key"),
                       ("--ca", "/etc/deadbolt/tls/ca.crt")):
        c.eq(flag_values(args, flag), [path], "kube proxy " + flag)
        c.eq(mounted_secret(pod, container, path), "deadbolt-kube-proxy-tls", "Secret behind " + path)
    token = flag_values(args, "--view-token-file")
    c.eq(token, ["/var/run/secrets/deadbolt/token"], "kube proxy --view-token-file")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mount = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == "/var/run/secrets/deadbolt"]
    if c.ok(len(mount) == 1, "view token mount missing"):
        sources = volumes[mount[0]["name"]].get("projected", {}).get("sources") or []
        c.ok(any(s.get("serviceAccountToken", {}).get("audience") == "deadbolt"
                 and s["serviceAccountToken"].get("path") == "token" for s in sources),
             "view token must be a projected token for audience deadbolt")
    check_probes(container, 9091, "kube proxy", c)
    c.ok(get(objects, "Service", KUBE_PROXY, NS) is not None, "kube proxy Service missing")
    c.ok(get(objects, "ServiceAccount", KUBE_PROXY, NS) is not None, "kube proxy ServiceAccount missing")


def check_network_policy(objects, e, c):
    policy = get(objects, "NetworkPolicy", OPERATOR, NS)
    if not e["network_policy"]:
        c.ok(policy is None, "NetworkPolicy without networkPolicy.enabled")
        return
    if not c.ok(policy is not None, "NetworkPolicy missing"):
        return
    deployment = get(objects, "Deployment", OPERATOR, NS)
    c.eq(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
         "NetworkPolicy podSelector")
    c.eq(policy["spec"]["policyTypes"], ["Ingress"], "NetworkPolicy policyTypes")
    by_port = {}
    for rule in policy["spec"]["ingress"]:
        c.eq(len(rule["ports"]), 1, "one port per NetworkPolicy rule")
        c.ok(rule.get("from"), "a NetworkPolicy rule without from admits everyone")
        by_port[rule["ports"][0]["port"]] = rule["from"]
    c.eq(sorted(by_port), ["lockview", "metrics", "mfa", "webhook"], "NetworkPolicy ports")
    c.eq(by_port.get("mfa"), [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "MFA service ingress")
    c.eq(by_port.get("webhook"), [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "webhook ingress")
    c.eq(by_port.get("lockview"), [{"namespaceSelector": {},
                                    "podSelector": {"matchLabels": {"deadbolt.dev/proxy": "true"}}}],
         "lock-view ingress")
    c.eq(by_port.get("metrics"), [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}], "metrics ingress")


def check_misc(objects, e, c):
    monitors = [k for k in objects if k[0] == "ServiceMonitor"]
    c.eq(len(monitors), 1 if e["service_monitor"] else 0, "ServiceMonitors")
    if monitors:
        m = objects[monitors[0]]
        c.eq(m["spec"]["endpoints"][0]["port"], "metrics", "ServiceMonitor port")
        c.eq(m["spec"]["endpoints"][0]["path"], "/metrics", "ServiceMonitor path")
    cap = get(objects, "ClusterAuthPreference", "cluster-auth-preference")
    if e["cap"]:
        if c.ok(cap is not None, "ClusterAuthPreference missing"):
            c.eq(cap["spec"], e["cap"], "ClusterAuthPreference spec")
    else:
        c.ok(cap is None, "ClusterAuthPreference rendered without clusterAuthPreference.create")
    for (kind, namespace, name), obj in objects.items():
        labels = obj["metadata"].get("labels") or {}
        c.eq(labels.get("app.kubernetes.io/part-of"), "deadbolt", "%s %s label part-of" % (kind, name))
        c.ok(kind != "Secret", "the chart must not ship Secrets (%s)" % name)
        c.ok(kind != "CustomResourceDefinition", "CRDs belong in crds/, not templates (%s)" % name)
        if namespace is None and kind in ("Deployment", "Service", "ServiceAccount", "Role", "RoleBinding",
                                          "PodDisruptionBudget", "NetworkPolicy"):
            c.ok(False, "%s %s has no namespace" % (kind, name))
        if namespace not in (None, NS):
            c.ok((kind, namespace, name) in (("Role", "default", OPERATOR + "-events"),
                                             ("RoleBinding", "default", OPERATOR + "-events")),
                 "%s %s in namespace %s" % (kind, name, namespace))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helm", default="helm")
    parser.add_argument("--chart", default=CHART)
    parser.add_argument("scenarios", nargs="*", help="default: all of %s" % ", ".join(SCENARIOS))
    a = parser.parse_args()
    if os.sep in a.helm:
        a.helm = os.path.abspath(a.helm)
    with open(os.path.join(a.chart, "Chart.yaml")) as f:
        chart_meta = yaml.safe_load(f)
    failed = 0
    for name in a.scenarios or list(SCENARIOS):
        args, expect = SCENARIOS[name]
        c = Checker(name)
        try:
            objects = index(render(a.helm, os.path.abspath(a.chart), args), c)
            check_rbac(objects, expect, c)
            check_operator(objects, expect, chart_meta, c)
            check_webhooks(objects, expect, c)
            check_cert_manager(objects, expect, c)
            check_kube_proxy(objects, expect, c)
            check_network_policy(objects, expect, c)
            check_misc(objects, expect, c)
        except Failures as error:
            c.errors.append(str(error))
        except (KeyError, TypeError, IndexError) as error:
            c.errors.append("unexpected manifest shape: %r" % (error,))
        if c.errors:
            failed += 1
            print("FAIL %s (%d checks, %d failed)" % (name, c.checks, len(c.errors)))
            for error in c.errors:
                print("  - " + error)
        else:
            kinds = sorted({k[0] for k in objects})
            print("ok   %-42s %3d objects, %3d checks (%s)" % (name, len(objects), c.checks, ", ".join(kinds)))
    if failed:
        sys.exit("check_rendered: %d scenario(s) failed" % failed)


if __name__ == "__main__":
    main()
