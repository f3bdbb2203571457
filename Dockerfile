# One image for every component; the command picks it:
#   sagabank serve accounts|transactions|fraud|notifications, sagabank worker,
#   sagabank migrate <service>.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/sagabank
COPY pyproject.toml README.md ./
COPY kit kit
COPY contracts contracts
COPY accounts accounts
COPY transactions transactions
COPY fraud fraud
COPY notifications notifications
COPY workflows workflows
COPY sagabank sagabank
RUN /opt/sagabank/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home sagabank
COPY --from=build /opt/sagabank /opt/sagabank
ENV PATH=/opt/sagabank/bin:$PATH PYTHONUNBUFFERED=1
USER sagabank
EXPOSE 8001 8002 8003 8004
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8001\")}/healthz')" || exit 1
CMD ["sagabank", "--help"]
