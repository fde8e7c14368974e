{{/*
The objects' name: the release's when it contains the chart's name (a release named netfence
gives netfence, as config/default names them), else RELEASE-netfence; fullnameOverride wins.
At most 55 characters, so that NAME-metrics stays a DNS label.
*/}}
{{- define "netfence.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The name of the cluster-scoped objects (the admission policy and its binding) and of the DNS
checks' Role in kube-system: the objects' name, and with watchNamespace that namespace too, so
that namespace-scoped releases of the same name (one per team) do not collide.
*/}}
{{- define "netfence.clusterName" -}}
{{- if .Values.watchNamespace -}}
{{- printf "%s-%s" (include "netfence.fullname" .) .Values.watchNamespace -}}
{{- else -}}
{{- include "netfence.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "netfence.serviceAccountName" -}}
{{- default (include "netfence.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The user name the API server gives that ServiceAccount (the admission policy lets it through). */}}
{{- define "netfence.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "netfence.serviceAccountName" . }}
{{- end -}}

{{/* Labels of every object (config/default's: the object's own and part-of). */}}
{{- define "netfence.labels" -}}
app.kubernetes.io/name: netfence
app.kubernetes.io/part-of: netfence
{{- end -}}

{{/* The pods' labels the Deployment, the PodDisruptionBudget and the Service select. */}}
{{- define "netfence.selectorLabels" -}}
app.kubernetes.io/name: netfence
app.kubernetes.io/component: controller
{{- end -}}

{{/* The image: REGISTRY/REPOSITORY@DIGEST, or :TAG (default: the chart's appVersion). */}}
{{- define "netfence.image" -}}
{{- $repository := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Values that cannot work together, refused with what to do. */}}
{{- define "netfence.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: replicas without a leader would all reconcile the same resources; enable leaderElection or set replicas: 1" (int .Values.replicas)) -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes the metrics Service" -}}
{{- end -}}
{{- if and .Values.clusterBaseline.enabled .Values.watchNamespace -}}
{{- fail (printf "clusterBaseline.enabled needs a cluster-wide install, but watchNamespace is %q: a namespace-scoped netfence does not reconcile ClusterBaselines" .Values.watchNamespace) -}}
{{- end -}}
{{- if and .Values.clusterBaseline.enabled (not (hasKey .Values.clusterBaseline.spec "namespaceSelector")) -}}
{{- fail "clusterBaseline.spec.namespaceSelector is required: the namespaces the baseline applies to ({} selects every namespace but kube-system, kube-public, kube-node-lease and netfence's own)" -}}
{{- end -}}
{{- if eq .Values.watchNamespace .Release.Namespace -}}
{{- fail (printf "watchNamespace is the release's namespace %q: deleting that namespace would delete netfence's ServiceAccount and Roles before netfence could release its resources there; install into a namespace of its own" .Release.Namespace) -}}
{{- end -}}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) -}}
{{- fail "serviceAccount.create is false but serviceAccount.name is empty: name the existing ServiceAccount netfence runs as" -}}
{{- end -}}
{{- $minAvailable := .Values.podDisruptionBudget.minAvailable -}}
{{- if and .Values.podDisruptionBudget.enabled (gt (int .Values.replicas) 1) (not (kindIs "string" $minAvailable)) (ge (int $minAvailable) (int .Values.replicas)) -}}
{{- fail (printf "podDisruptionBudget.minAvailable is %d with %d replicas: no pod could ever be evicted and every node drain would block; keep it below replicas" (int $minAvailable) (int .Values.replicas)) -}}
{{- end -}}
{{- range .Values.extraArgs -}}
{{- $flag := regexReplaceAll "=.*$" . "" -}}
{{- if has $flag (list "--leader-election" "--lease-name" "--namespace" "--metrics-addr" "--log-format") -}}
{{- fail (printf "extraArgs: %s is set by the chart (netfence refuses a flag given twice); use the chart's value for it (docs/install.md, Install with Helm)" $flag) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := .Values.podLabels -}}
{{- if or (eq $key "app.kubernetes.io/name") (eq $key "app.kubernetes.io/component") -}}
{{- fail (printf "podLabels.%s: the Deployment selects its pods by this label, which the chart sets; choose another key" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
