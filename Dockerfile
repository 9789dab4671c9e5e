# One image for every multitune service (api, suggester, workers, flower).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MULTITUNE_DATA_DIR=/data
WORKDIR /app
RUN pip install torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY examples ./examples
RUN pip install -e .
RUN useradd --create-home --uid 1000 multitune && mkdir -p /data && chown multitune /data
USER multitune
EXPOSE 8000 5555
CMD ["multitune", "--help"]
