# Multi-stage build of the one sekisho binary into a static, non-root image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sekisho ./cmd/sekisho

# scratch: nothing but the binary and the CA roots (for connectors that
# verify the gateway with the system roots). Runs as an unprivileged uid.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/sekisho /usr/local/bin/sekisho
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sekisho"]
CMD ["version"]
