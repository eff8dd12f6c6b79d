# Plain-server image for non-AWS hosts: the same app under uvicorn on :8000,
# as a non-root user, with the seed's health check.
#   docker build -t face-recognition:latest .
#   docker run -d -p 8000:8000 face-recognition:latest
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml constraints.txt infra/requirements.py /tmp/build/
RUN python /tmp/build/requirements.py /tmp/build/pyproject.toml > /tmp/build/requirements.txt \
 && pip install --no-cache-dir -c /tmp/build/constraints.txt -r /tmp/build/requirements.txt \
 && rm -rf /tmp/build

ARG MODEL_NAME=buffalo_l
COPY infra/bake_models.py /tmp/build/
COPY function/face_recognition_service/models/ /tmp/build/model_packs/
COPY infra/models/ /tmp/build/models/
RUN python /tmp/build/bake_models.py "${MODEL_NAME}" /opt/models /tmp/build/models && rm -rf /tmp/build

COPY function/ /app/
RUN useradd --system --uid 10001 --no-create-home app
ENV MODEL_NAME=${MODEL_NAME} MODEL_DIR=/opt/models HOST=0.0.0.0 PORT=8000 WORKERS=1 \
    ORT_DISABLE_TELEMETRY=1
# The code compiled to bytecode at build time (the app user cannot write /app:
# without the .pyc files every start would compile the package again), then a
# check that the baked pack loads with it.
RUN python -m compileall -q face_recognition_service \
 && python -m face_recognition_service.provision --verify-only
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/api/v1/health')"]
CMD ["python", "-m", "face_recognition_service.server"]
