# Build and run vectorgate. Without arguments it serves the embedded stores on /data,
# listening on all addresses: that needs users, so mount a config file with [[users]]
# and set VECTORGATE_CONFIG (or pass --auth trust for a private network; see the README).
# Pass `serve --scylla host:9042 --qdrant http://host:6334 ...` for ScyllaDB and Qdrant.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin vectorgate

FROM debian:bookworm-slim
COPY --from=build /src/target/release/vectorgate /usr/local/bin/vectorgate
VOLUME /data
EXPOSE 5433
ENTRYPOINT ["vectorgate"]
CMD ["serve", "--listen", "0.0.0.0:5433", "--data", "/data"]
