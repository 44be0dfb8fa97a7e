FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bus bus
COPY adapters adapters
COPY transformers transformers
COPY examples examples
RUN pip install --no-cache-dir .
COPY config config
COPY routes routes
# Not root: the daemon needs to write only its state folder (.esb/; docker-compose.yml mounts
# the host's ./.esb there and runs it as the host user).
RUN useradd --system --uid 10001 --no-create-home --home-dir /app esb \
    && mkdir .esb && chown esb .esb
USER esb
ENV ESB_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
CMD ["esb", "run", "--config", "config/esb.yaml"]
