# toma in a container: slim, non-root, dependencies from the hashed lock.
#
#   docker build -t toma .
#   docker run -d --name toma -v toma-project:/project toma       # first start: a starter project
#   docker run --rm -v toma-project:/project toma check
#
# The project folder (config.toml, sequences, templates, var/data) is the
# volume /project; passwords come in as environment variables (config.toml
# names them). See docs/container.md and compose.yaml.

# Any Debian-based image with python3 (3.11 or newer) and its venv module will do:
# --build-arg BASE=… where the default cannot be pulled.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock ./
RUN python3 -m venv /opt/toma \
    && /opt/toma/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/toma/bin/pip install --no-deps . \
    && /opt/toma/bin/python -m compileall -q /opt/toma/lib

FROM ${BASE}
RUN groupadd --system --gid 10001 toma \
    && useradd --system --uid 10001 --gid toma --home-dir /project --shell /usr/sbin/nologin toma \
    && install -d -o toma -g toma -m 0700 /project
COPY --from=build /opt/toma /opt/toma
COPY contrib/docker-entrypoint.sh /usr/local/bin/toma-entrypoint
ENV PATH=/opt/toma/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TOMA_PROJECT=/project
USER toma:toma
WORKDIR /project
VOLUME ["/project"]
# The one-click unsubscribe endpoint, where [unsubscribe] listen = "0.0.0.0:8025".
EXPOSE 8025
HEALTHCHECK --interval=1m --timeout=15s --start-period=30s --retries=3 \
    CMD ["toma-entrypoint", "healthcheck"]
ENTRYPOINT ["toma-entrypoint"]
CMD ["run"]
