{{- define "paddock.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "paddock.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "paddock.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "paddock.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: paddock
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" . "component" "gateway") */}}
{{- define "paddock.selector" -}}
app.kubernetes.io/name: {{ include "paddock.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "paddock.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "paddock.controller" -}}{{ include "paddock.fullname" . }}-controller{{- end -}}
{{- define "paddock.gateway" -}}{{ include "paddock.fullname" . }}-gateway{{- end -}}
{{- define "paddock.adminSecret" -}}{{ .Values.gateway.adminToken.existingSecret | default (printf "%s-admin-token" (include "paddock.gateway" .)) }}{{- end -}}
{{- define "paddock.egressCaSecret" -}}{{ .Values.gateway.egress.ca.existingSecret | default (printf "%s-egress-ca" (include "paddock.gateway" .)) }}{{- end -}}
{{- define "paddock.gatewayURL" -}}{{ include "paddock.gatewayScheme" . }}://{{ include "paddock.gateway" . }}.{{ .Release.Namespace }}.svc:{{ .Values.gateway.port }}{{- end -}}
{{- define "paddock.gatewayScheme" -}}{{ if .Values.gateway.tls.enabled }}https{{ else }}http{{ end }}{{- end -}}

{{/* The gateway's serving certificate: a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt. */}}
{{- define "paddock.gatewayTlsSecret" -}}{{ .Values.gateway.tls.existingSecret | default (printf "%s-tls" (include "paddock.gateway" .)) }}{{- end -}}
{{/* The names runners and the controller reach the gateway Service by (its ClusterIP is not known when the chart
     renders, and runners use the name: the controller writes its address into their /etc/hosts), as JSON. */}}
{{- define "paddock.gatewayTlsNames" -}}
{{- $svc := include "paddock.gateway" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.gateway.tls.clusterDomain) -}}
{{- toJson (concat $names .Values.gateway.tls.extraNames | uniq) -}}
{{- end -}}

{{/* The hardened security contexts every Paddock container uses (the "restricted" Pod Security Standard). */}}
{{- define "paddock.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "paddock.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* "k=v,k=v" from a map, for flags. */}}
{{- define "paddock.labelFlag" -}}
{{- $out := list -}}
{{- range $k, $v := . -}}{{- $out = append $out (printf "%s=%s" $k $v) -}}{{- end -}}
{{- join "," $out -}}
{{- end -}}
