{{/* Names and labels shared by every template. */}}

{{- define "tcloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tcloud.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "tcloud.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "tcloud.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tcloud.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tcloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: call with (list $ "api") or (list $ "worker"). */}}
{{- define "tcloud.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tcloud.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tcloud.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tcloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tcloud.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tcloud.secretName" -}}
{{- default (printf "%s-secrets" (include "tcloud.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Environment shared by both processes: the ConfigMap, the Secret, and the JWT key file. */}}
{{- define "tcloud.envFrom" -}}
- configMapRef:
    name: {{ include "tcloud.fullname" . }}-config
{{- if or .Values.secrets.existingSecret .Values.secrets.values }}
- secretRef:
    name: {{ include "tcloud.secretName" . }}
{{- end }}
{{- end -}}

{{- define "tcloud.volumes" -}}
- name: tmp
  emptyDir: {}
- name: state
  emptyDir: {}
{{- if .Values.jwtPrivateKey.existingSecret }}
- name: jwt
  secret:
    secretName: {{ .Values.jwtPrivateKey.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ .Values.jwtPrivateKey.key }}
        path: private.pem
{{- end }}
{{- end -}}

{{- define "tcloud.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: state
  mountPath: {{ .Values.config.state_dir | default "/var/lib/tcloud" }}
{{- if .Values.jwtPrivateKey.existingSecret }}
- name: jwt
  mountPath: /var/run/tcloud/jwt
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tcloud.podSpecCommon" -}}
serviceAccountName: {{ include "tcloud.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
