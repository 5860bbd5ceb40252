# Build and run vectorgate. Without arguments it serves the embedded stores on /data;
# pass `serve --scylla host:9042 ...` to keep rows in ScyllaDB.
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
