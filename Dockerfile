# syntax=docker/dockerfile:1
# ggufy in containers. Stages:
#   build    compiles the static binary (scripts/build-static.sh: musl, no shared libraries)
#   example  what a model-building stage looks like: convert, quantize, gate on quality, smoke-run
#            (docker build --target example .)
#   runtime  the default: distroless/static holding nothing but /ggufy (~14 MB)
#
#   docker build --build-arg GGUFY_GIT_REV=$(git rev-parse --short=12 HEAD) -t ggufy .
#   docker run --rm -v "$PWD:/w" -w /w ggufy convert ./my-checkpoint -o model-q4_0.gguf --outtype q4_0
#
# Docker cannot run on the machines that test ggufy, so tests/examples.rs runs the example stage's
# WORKDIR/COPY/ENV/RUN steps itself with the freshly built binary, and .ci/run builds the static
# binary with the same script and runs it in an empty root directory (as FROM scratch would).

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# .git is not in the build context; pass the revision for `ggufy --version`.
ARG GGUFY_GIT_REV=unknown
ENV GGUFY_GIT_REV=${GGUFY_GIT_REV}
RUN cp "$(scripts/build-static.sh | tail -n 1)" /usr/local/bin/ggufy && ggufy --version

# A model stage: in your own Dockerfile, COPY --from an image built from this file (or from the
# build stage) and point the commands at your checkpoint, or at a hub id with a build secret:
#   RUN --mount=type=secret,id=hf_token HF_TOKEN=$(cat /run/secrets/hf_token) \
#       ggufy convert meta-llama/Llama-3.2-1B@main -o model-q4_0.gguf --outtype q4_0
FROM debian:bookworm-slim AS example
COPY --from=build /usr/local/bin/ggufy /usr/local/bin/ggufy
WORKDIR /models
COPY fixtures/hf/tiny-llama checkpoint/
COPY fixtures/text/held-out.txt eval.txt
RUN ggufy convert checkpoint -o model-f16.gguf --outtype f16 --quiet
RUN ggufy convert checkpoint -o model-q4_0.gguf --outtype q4_0 --quiet
# Fail the image build if quantization hurt the model more than this.
RUN ggufy perplexity model-q4_0.gguf -f eval.txt --ctx 128 --chunks 4 --base model-f16.gguf --max-kl 0.01
RUN ggufy run model-q4_0.gguf -p "Hello" -n 8 --greedy && sha256sum model-q4_0.gguf > SHA256SUMS

FROM gcr.io/distroless/static-debian12 AS runtime
COPY --from=build /usr/local/bin/ggufy /ggufy
ENTRYPOINT ["/ggufy"]
