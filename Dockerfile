# The image of deploy/kubernetes: a static binary on distroless, as user
# 65532 with nothing else in the image.
#   docker build -t ghcr.io/crucible-telemetry/crucible-telemetry:$(cat VERSION) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/crucible-telemetry /bin/crucible-telemetry
USER 65532:65532
EXPOSE 9477
VOLUME /var/lib/crucible-telemetry
ENTRYPOINT ["/bin/crucible-telemetry"]
CMD ["--storage.path=/var/lib/crucible-telemetry"]
