{{/* The chart name, for the app.kubernetes.io/name label. */}}
{{- define "scanjob.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "scanjob.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "scanjob.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "scanjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* What selects the operator pod. Worker pods also carry app.kubernetes.io/name=scanjob,
but never the instance and component labels. */}}
{{- define "scanjob.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scanjob.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "scanjob.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scanjob.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The watched namespace with watch.scope namespace; empty with scope cluster. */}}
{{- define "scanjob.watchNamespace" -}}
{{- if eq .Values.watch.scope "namespace" }}
{{- default .Release.Namespace .Values.watch.namespace }}
{{- end }}
{{- end }}

{{/* Where the ScanJobs of `scans` go: the watched namespace, else the release namespace. */}}
{{- define "scanjob.scanNamespace" -}}
{{- default .Release.Namespace (include "scanjob.watchNamespace" .) }}
{{- end }}

{{/* The namespaces that get the worker ServiceAccount, one per line. */}}
{{- define "scanjob.workerNamespaces" -}}
{{- $namespaces := list (include "scanjob.scanNamespace" .) }}
{{- with .Values.worker.serviceAccount.extraNamespaces }}
{{- if eq $.Values.watch.scope "namespace" }}
{{- fail "worker.serviceAccount.extraNamespaces needs watch.scope cluster: with scope namespace, ScanJobs run in the watched namespace only" }}
{{- end }}
{{- $namespaces = concat $namespaces . }}
{{- end }}
{{- join "\n" (uniq $namespaces) }}
{{- end }}

{{/* An image reference: repository and tag, the tag defaulting to the chart's appVersion. */}}
{{- define "scanjob.image" -}}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}
