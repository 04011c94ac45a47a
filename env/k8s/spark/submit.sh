#!/usr/bin/env bash
# Runs the portfolio job on Kubernetes: `spark-submit --master k8s://...` in cluster mode, the
# driver and executors in pods of the image env/k8s/spark/Containerfile builds (the service's
# image plus Java and pyspark), under the account env/k8s/spark/rbac.yaml grants.
#   kubectl apply -n credit-scoring -f env/k8s/spark/rbac.yaml
#   K8S_API=https://10.0.0.1:6443 IMAGE=registry.example/credit-scoring-spark:<git-sha> \
#     bash env/k8s/spark/submit.sh --input s3a://book/2026-12/ --output s3a://scored/2026-12/ \
#       --id-column SK_ID_CURR --reasons 4
# Input and output must be storage every pod reaches (s3a://, hdfs://, a shared volume); the
# model is the one inside the image's Bento, shipped to the executors by the job itself.
set -euo pipefail
cd "$(dirname "$0")/../../.."
: "${K8S_API:?set K8S_API to the Kubernetes API server URL, e.g. https://10.0.0.1:6443}"
: "${IMAGE:?set IMAGE to the image env/k8s/spark/Containerfile built, by tag or digest}"
NAMESPACE=${NAMESPACE:-credit-scoring}
EXECUTORS=${EXECUTORS:-4}
SPARK_SUBMIT=${SPARK_SUBMIT:-.venv/bin/spark-submit}
exec "$SPARK_SUBMIT" \
  --master "k8s://$K8S_API" \
  --deploy-mode cluster \
  --name credit-portfolio \
  --conf spark.kubernetes.namespace="$NAMESPACE" \
  --conf spark.kubernetes.container.image="$IMAGE" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=credit-portfolio \
  --conf spark.kubernetes.driver.podTemplateFile=env/k8s/spark/pod-template.yaml \
  --conf spark.kubernetes.executor.podTemplateFile=env/k8s/spark/pod-template.yaml \
  --conf spark.kubernetes.driver.podTemplateContainerName=spark \
  --conf spark.kubernetes.executor.podTemplateContainerName=spark \
  --conf spark.kubernetes.pyspark.pythonVersion=3 \
  --conf spark.executor.instances="$EXECUTORS" \
  --conf spark.executor.cores=2 \
  --conf spark.executor.memory=2g \
  --conf spark.driver.cores=1 \
  --conf spark.driver.memory=2g \
  --conf spark.kubernetes.executor.request.cores=2 \
  --conf spark.kubernetes.executor.limit.cores=2 \
  local:///home/bentoml/bento/src/scoring/portfolio/__main__.py "$@"
