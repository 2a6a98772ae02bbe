# hpcrun's render-farm worker (hpcrun/node/farm) as a container image for Kubernetes:
# `hpcrun farm up` (and `hpcrun render` on a kubernetes or eks cluster) runs
# `python3 -m hpcrun.node.farm worker --queue URL --bucket B --prefix P` in every pod of
# the farm's Deployment. Debian's Blender and ffmpeg, as on the Slurm path's nodes; boto3
# reaches SQS and S3 as the pod's service account (IRSA), so no credential is baked in.
#   make render-worker-image                      # where a container engine runs
#   docker push <registry>/hpcrun/render-worker:<version>, then name it in the cluster
#   file as farm.image (or `hpcrun farm up --image ...`)
FROM debian:12-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends blender ffmpeg python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hpcrun ./hpcrun
COPY scenes ./scenes
RUN python3 -m venv /opt/hpcrun && /opt/hpcrun/bin/pip install boto3 . \
    && /opt/hpcrun/bin/python -c "import hpcrun.node.farm" \
    && useradd --create-home --uid 10001 renderer
ENV PATH=/opt/hpcrun/bin:$PATH
USER 10001
WORKDIR /home/renderer
ENTRYPOINT []
CMD ["python3", "-m", "hpcrun.node.farm", "--help"]
