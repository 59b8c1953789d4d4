# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/sessctl .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessctl /usr/local/bin/sessctl
USER nonroot:nonroot
WORKDIR /var/lib/sessctl
VOLUME ["/var/lib/sessctl/data"]
EXPOSE 3128 9090
ENTRYPOINT ["/usr/local/bin/sessctl"]
CMD ["serve", "--listen", "0.0.0.0:3128", "--data_dir", "/var/lib/sessctl/data"]
