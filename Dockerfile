# vispipe in a container: the whole pipeline, on a GPU, in one command.
#
#   docker build -t vispipe:0.1.0 .
#   mkdir -p results data
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" \
#       -v "$PWD/results:/app/results" -v "$PWD/data:/app/data" vispipe:0.1.0 --cores all
#
# The entry point is `snakemake` in /app (the workflow), so arguments after the image are
# Snakemake's: `--cores all --configfile config/demo.yaml`, `-n`, a target file, ...
#
# BASE_IMAGE: a CUDA PyTorch image. torch and torchvision come from it; every other
# dependency is pinned by constraints.txt. On a base without torch, the pinned torch and
# torchvision from constraints.txt are installed instead.
# Offline (no index reachable from the build): put wheels into wheelhouse/ first
# (`make wheelhouse`) and build with `--build-arg PIP_NO_INDEX=1`.
ARG BASE_IMAGE=pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime

FROM ${BASE_IMAGE} AS build
# (a label to find and remove this stage's image after a classic-builder build)
LABEL vispipe.stage=build
# Set to 1 to install from wheelhouse/ only (pip reads PIP_NO_INDEX).
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_FIND_LINKS=/src/wheelhouse
WORKDIR /src
COPY . /src
# A virtual environment that sees the base image's packages (its CUDA torch) and holds
# everything else, pinned; the project itself is installed as a regular package.
RUN python3 -m venv --system-site-packages /opt/venv \
 && if python3 -c "import torch, torchvision" 2>/dev/null; then \
        sed -E '/^(torch|torchvision)==/d' constraints.txt > /tmp/constraints.txt; \
    else \
        cp constraints.txt /tmp/constraints.txt; \
    fi \
 && /opt/venv/bin/python -m pip install -c /tmp/constraints.txt "/src[slurm,tracking,s3]" \
 && /opt/venv/bin/python -m pip install --no-deps -c /tmp/constraints.txt trackeval \
 && /opt/venv/bin/python -c "import torch, torchvision, vispipe; print('torch', torch.__version__)"

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="vispipe" \
      org.opencontainers.image.description="Snakemake pipeline: CIFAR-10 ViT distillation and text-guided video segmentation" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY Snakefile constraints.txt pyproject.toml README.md /app/
COPY rules /app/rules
COPY config /app/config
COPY scripts /app/scripts
COPY src /app/src
COPY envs /app/envs
COPY profiles /app/profiles
COPY report /app/report
COPY resources/demo /app/resources/demo
# A non-root user (uid 1000). Any other uid works too (docker run --user "$(id -u):$(id -g)"):
# the folders the pipeline writes are open to all.
RUN (id -u 1000 >/dev/null 2>&1 || useradd --create-home --uid 1000 --shell /bin/bash vispipe) \
 && mkdir -p data results logs benchmarks resources/models .snakemake \
 && chmod a+rwx . data results logs benchmarks resources resources/models .snakemake
USER 1000
ENTRYPOINT ["snakemake"]
CMD ["--cores", "all"]
