{{- define "rktnetes.labels" -}}
app.kubernetes.io/name: rktnetes-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "rktnetes.controllerSelector" -}}
app.kubernetes.io/name: rktnetes-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "rktnetes.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- /* The user name Kubernetes gives the agent's ServiceAccount. */ -}}
{{- define "rktnetes.agentUser" -}}
system:serviceaccount:{{ .Values.agent.namespace }}:{{ .Values.agent.serviceAccount }}
{{- end }}

{{- /* The user name Kubernetes gives the controller's ServiceAccount. */ -}}
{{- define "rktnetes.controllerUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ .Values.controller.serviceAccount }}
{{- end }}
