{{/* Chart name. */}}
{{- define "kstash.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, suffixed with the chart name unless it already contains it. */}}
{{- define "kstash.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "kstash.labels" -}}
app.kubernetes.io/name: {{ include "kstash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of the operator's pods. */}}
{{- define "kstash.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kstash.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The ServiceAccount's name. */}}
{{- define "kstash.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kstash.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image reference (digest wins over tag). */}}
{{- define "kstash.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Elasticsearch tasks' parameters (KubeStash catalog defaults). */}}
{{- define "kstash.esParameters" -}}
- name: args
  usage: Arguments to be passed to the dump command.
  required: false
  default: "--match=^(?![.])(?!apm-agent-configuration)(?!kubedb-system).+"
- name: interimDataDir
  usage: Specifies the path for interim data (ignored by kstash, which streams).
  required: false
  default: /kubestash-interim/data
- name: enableCache
  usage: Enable or disable caching (ignored by kstash).
  required: false
  default: "true"
- name: scratchDir
  usage: Directory for holding temporary files (ignored by kstash).
  required: false
  default: /kubestash-tmp
{{- end -}}

{{/* The Secret holding the webhook's CA and serving certificate: one per release. */}}
{{- define "kstash.webhookSecret" -}}
{{- default (printf "%s-webhook-cert" (include "kstash.fullname" .)) .Values.webhook.certSecret -}}
{{- end -}}
