# deploykit serving image: BentoML's server with deploykit's prediction service and one model folder.
#
#   deploykit train-export mnist --models torch-mlp          # writes models/mnist/torch-mlp
#   docker build -t deploykit-serve --build-arg MODEL_DIR=models/mnist/torch-mlp .
#   docker run --rm -p 3000:3000 deploykit-serve             # POST /predict, /predict_image; /readyz
#   docker run --rm -p 3000:3000 -e DEPLOYKIT_FORMAT=onnx -e DEPLOYKIT_WORKERS=2 deploykit-serve
#
# The other way: `bentoml build -f serving/bentofile.yaml .` then `bentoml containerize deploykit:latest`
# (packs a model from the BentoML store instead of a folder). Keep the packages below and the bentofile's
# `python.packages` the same; docs/serving.md says how both are built. Settings are DEPLOYKIT_*
# variables (deploykit/serving/config.py). The runtimes installed here serve ONNX and TFLite artifacts;
# for torchscript or savedmodel add torch==2.13.0 (CPU wheel) or tensorflow==2.21.0 to the pip line.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    BENTOML_HOME=/home/deploykit/bentoml BENTOML_DO_NOT_TRACK=True \
    PYTHONPATH=/app/src:/app

RUN pip install \
        "bentoml==1.4.39" "numpy>=1.26,<3" "pydantic>=2.5" "typer>=0.12" "rich>=13" "pillow>=10" \
        "msgspec==0.22.0" "onnx==1.23.2" "onnxruntime==1.32.0" "ai-edge-litert==2.3.0" \
        "uvloop==0.23.0" "httptools==0.9.0" \
    && useradd --create-home --uid 10001 deploykit

WORKDIR /app
COPY src/deploykit /app/src/deploykit
COPY serving /app/serving

ARG MODEL_DIR=models/mnist/torch-mlp
COPY ${MODEL_DIR} /models/model
ENV DEPLOYKIT_MODEL=/models/model DEPLOYKIT_FORMAT=auto

USER deploykit
EXPOSE 3000
# Ready only once the model is loaded and warmed up (503 before).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/readyz', timeout=2)"
CMD ["bentoml", "serve", "serving.service:DeployKitService", "--host", "0.0.0.0", "--port", "3000"]
