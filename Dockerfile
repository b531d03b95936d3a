# The streamrec app image: Python 3.11, a JRE for Spark, Maven to fetch the connector jars once.
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless maven make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN make setup
ENV STREAMREC_HOME=/data
VOLUME /data
ENTRYPOINT [".venv/bin/streamrec"]
CMD ["stream"]
