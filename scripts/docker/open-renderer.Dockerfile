# hpcrun's open renderer (viewer + render agents, the cluster-side package hpcrun/node/)
# as a container image for Kubernetes: `hpcrun index --renderer open` on a kubernetes or
# eks cluster runs `hpcrun-nvindex-slurm` from it in every pod, which learns its role,
# release, node and the viewer's address from the pod (hpcrun/node/viewer/pod.py).
#   make open-renderer-image                      # where a container engine runs
#   docker push <registry>/hpcrun/open-renderer:<version>, then name it in the cluster
#   file as index.open_image
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hpcrun ./hpcrun
COPY scenes ./scenes
RUN pip install '.[viewer]' && python -c "import hpcrun.node.viewer.launcher" \
    && useradd --create-home --uid 10001 renderer
USER 10001
WORKDIR /home/renderer
EXPOSE 8080 10000
ENTRYPOINT []
CMD ["hpcrun-nvindex-slurm", "--help"]
