# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/sessctl . && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessctl /usr/local/bin/sessctl
# The state directory belongs to the nonroot user, so that a named volume
# mounted there starts out writable (mode 0700: keys live in it).
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/sessctl/data
USER nonroot:nonroot
WORKDIR /var/lib/sessctl
VOLUME ["/var/lib/sessctl/data"]
# The admin listener (9090) stays on loopback inside the container.
EXPOSE 3128
ENTRYPOINT ["/usr/local/bin/sessctl"]
CMD ["serve", "--listen", "0.0.0.0:3128", "--data_dir", "/var/lib/sessctl/data"]
