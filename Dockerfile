# One image for every Sagabank component; the command picks it:
#   sagabank serve accounts|transactions|fraud|notifications --host 0.0.0.0  (8001-8004)
#   sagabank worker                                  the saga's Temporal worker
#   sagabank migrate <service>                       one-shot: its schema to head
#   python /opt/sagabank/libexec/temporal_setup.py   one-shot: namespace, search attributes
# Configuration is read from the environment at run time (compose.yaml, deploy/k8s/): the
# image holds no secret, no database URL and no state. tests/test_deployment.py checks it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/sagabank
# Dependencies before the code, so that a code change reuses this layer: the exact
# versions and hashes of the runtime lock (the project's dependencies without the local
# stack's wheels), after pip and the build backend from theirs. Every one installs from a
# wheel: the build needs no compiler.
COPY requirements/build.txt requirements/runtime.txt requirements/
RUN /opt/sagabank/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.txt \
    && /opt/sagabank/bin/pip install --require-hashes --only-binary=:all: -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY kit kit
COPY contracts contracts
COPY accounts accounts
COPY transactions transactions
COPY fraud fraud
COPY notifications notifications
COPY workflows workflows
COPY sagabank sagabank
COPY console console
# --no-deps: every dependency came from the lock above. pip and setuptools leave the
# final image: nothing installs anything at run time.
RUN /opt/sagabank/bin/pip install --no-deps --no-build-isolation . \
    && /opt/sagabank/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="sagabank" \
      org.opencontainers.image.description="Sagabank services, saga worker and migrations" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric, unprivileged user: Kubernetes' runAsNonRoot can only verify a numeric one.
# The audit checkpoint volume's mount point, the user's: an empty named volume takes its
# owner from the image, so the services may write their checkpoints there.
RUN groupadd --system --gid 10001 sagabank \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sagabank \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/sagabank/audit-checkpoints
COPY --from=build /opt/sagabank /opt/sagabank
COPY deploy/image/healthcheck.py deploy/image/temporal_setup.py /opt/sagabank/libexec/
# No bytecode written at run time: the root filesystem may be read-only.
ENV PATH=/opt/sagabank/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The image's version: the pipeline passes the commit it tags the image with, compose its
# SAGABANK_VERSION. It is the worker's build id (deployment version, decision 0042), so a
# new image is a new version wherever it runs; nothing should set WORKER_BUILD_ID over it.
# After every layer that installs anything, so that a new version rebuilds none of them.
ARG SAGABANK_VERSION=dev
LABEL org.opencontainers.image.version=$SAGABANK_VERSION
ENV WORKER_BUILD_ID=$SAGABANK_VERSION
WORKDIR /opt/sagabank
USER 10001:10001
EXPOSE 8001 8002 8003 8004 8005
# Knows each component from the main process's command line: a service's /healthz on its
# port, the worker's poller on its task queue (deploy/image/healthcheck.py).
HEALTHCHECK --interval=15s --timeout=8s --start-period=30s --retries=3 \
    CMD ["python", "/opt/sagabank/libexec/healthcheck.py"]
CMD ["sagabank", "--help"]
