{{/*
Names. Every object is named after the chart (`deadbolt`), not the release:
the chart is installed once per cluster.
*/}}
{{- define "deadbolt.fullname" -}}
{{- default .Chart.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's Deployment, ServiceAccount and Service (the operator's --service-name). */}}
{{- define "deadbolt.operator" -}}
{{- printf "%s-operator" (include "deadbolt.fullname" .) -}}
{{- end -}}

{{- define "deadbolt.kubeProxy" -}}
{{- printf "%s-kube-proxy" (include "deadbolt.fullname" .) -}}
{{- end -}}

{{- define "deadbolt.validatingWebhook" -}}
{{- printf "%s-validating" (include "deadbolt.fullname" .) -}}
{{- end -}}

{{- define "deadbolt.mutatingWebhook" -}}
{{- printf "%s-mutating" (include "deadbolt.fullname" .) -}}
{{- end -}}

{{/* The serving certificate's Secret (cert-manager) and its Certificate. */}}
{{- define "deadbolt.servingCert" -}}
{{- printf "%s-operator-tls" (include "deadbolt.fullname" .) -}}
{{- end -}}

{{/* Fixed by the operator's code: the leader Lease and the CA Secret. */}}
{{- define "deadbolt.leaseName" -}}deadbolt-operator{{- end -}}
{{- define "deadbolt.caSecret" -}}deadbolt-ca{{- end -}}

{{- define "deadbolt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deadbolt
{{- end -}}

{{- define "deadbolt.operatorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "deadbolt.kubeProxySelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: kube-proxy
{{- end -}}

{{/* repository:tag, or repository@digest. */}}
{{- define "deadbolt.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "deadbolt.injectImage" -}}
{{- default (include "deadbolt.image" .) .Values.injection.image -}}
{{- end -}}

{{- define "deadbolt.viewURL" -}}
{{- printf "https://%s.%s.svc:8443" (include "deadbolt.operator" .) .Release.Namespace -}}
{{- end -}}

{{- define "deadbolt.injectViewURL" -}}
{{- default (include "deadbolt.viewURL" .) .Values.injection.viewURL -}}
{{- end -}}

{{/* The operator's own user name, exempt from lock enforcement. */}}
{{- define "deadbolt.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "deadbolt.operator" .) -}}
{{- end -}}

{{/*
The enforcement webhook's failure policy: the explicit value, else Fail in
strict mode and Ignore in best_effort mode.
*/}}
{{- define "deadbolt.enforcementFailurePolicy" -}}
{{- if .Values.webhooks.failurePolicy.enforcement -}}
{{- .Values.webhooks.failurePolicy.enforcement -}}
{{- else if eq .Values.lockingMode "strict" -}}
Fail
{{- else -}}
Ignore
{{- end -}}
{{- end -}}

{{/* Every lock-view subscriber: the configured ones and the kube-API proxy. */}}
{{- define "deadbolt.subscribers" -}}
{{- $subscribers := list -}}
{{- range .Values.subscribers -}}
{{- $subscribers = append $subscribers . -}}
{{- end -}}
{{- if .Values.kubeProxy.enabled -}}
{{- $subscribers = append $subscribers (printf "%s/%s=%s" .Release.Namespace (include "deadbolt.kubeProxy" .) .Values.kubeProxy.serverId) -}}
{{- end -}}
{{- toJson $subscribers -}}
{{- end -}}

{{/*
matchConditions every webhook shares: Kubernetes' own components (`system:`
users that are not service accounts) are never sent to Deadbolt.
*/}}
{{- define "deadbolt.controlPlaneCondition" -}}
- name: not-control-plane
  expression: "!(request.userInfo.username.startsWith('system:') && !request.userInfo.username.startsWith('system:serviceaccount:'))"
{{- end -}}

{{/* The restricted Pod Security profile. */}}
{{- define "deadbolt.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "deadbolt.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}
