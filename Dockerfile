# One target per multitune role; each installs only its extra of pyproject.toml:
#   api        multitune[api]        Flask, SQLAlchemy, gunicorn, scikit-learn; no torch
#   suggester  multitune[suggester]  torch, BoTorch, GPyTorch, Celery
#   worker     multitune[worker]     torch, torchvision, BoTorch, Celery
#   flower     multitune[flower]     Celery, Flower; no torch
#   all        multitune[all]        everything (`multitune up` in one container); the default
# compose.yaml builds each service's target; by hand: docker build --target api -t multitune-api .
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MULTITUNE_DATA_DIR=/data
WORKDIR /app
RUN useradd --create-home --uid 1000 multitune && mkdir -p /data && chown multitune /data

# The sources, copied into each target below after its heavy dependencies.
FROM scratch AS source
COPY pyproject.toml README.md /app/
COPY shared /app/shared
COPY services /app/services
COPY examples /app/examples

# torch in a layer of its own: shared by the suggester and worker images, and not rebuilt when
# the sources change.
FROM base AS torch
RUN pip install torch==2.14.1

FROM base AS api
COPY --from=source /app /app
RUN pip install -e ".[api]"
USER multitune
EXPOSE 8000
CMD ["multitune", "api", "--host", "0.0.0.0", "--port", "8000"]

FROM torch AS suggester
COPY --from=source /app /app
RUN pip install -e ".[suggester]"
USER multitune
CMD ["multitune", "suggester"]

FROM torch AS worker
COPY --from=source /app /app
RUN pip install -e ".[worker]"
USER multitune
CMD ["multitune", "worker"]

FROM base AS flower
COPY --from=source /app /app
RUN pip install -e ".[flower]"
USER multitune
EXPOSE 5555
CMD ["multitune", "flower", "--address", "0.0.0.0", "--port", "5555"]

FROM torch AS all
COPY --from=source /app /app
RUN pip install -e ".[all]"
USER multitune
EXPOSE 8000 5555
CMD ["multitune", "--help"]
