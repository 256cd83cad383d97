# sse-hub: slim two-stage image, non-root, memory broker on port 8080 by default.
# Configure with a mounted file (-v ./hub.yaml:/etc/sse-hub/config.yaml -e SSE_HUB_CONFIG=/etc/sse-hub/config.yaml)
# or with SSE_HUB_<SECTION>__<KEY> variables (e.g. -e SSE_HUB_BROKER__BACKEND=redis).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sse_hub ./sse_hub
RUN python -m venv /opt/sse-hub \
 && /opt/sse-hub/bin/pip install --no-cache-dir '.[fast]'

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sse-hub
COPY --from=build /opt/sse-hub /opt/sse-hub
ENV PATH=/opt/sse-hub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SSE_HUB_SERVER__PORT', '8080'), timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["sse-hub"]
CMD ["serve"]
