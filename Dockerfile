# korc: a static binary on a distroless base, run as non-root.
FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p korc --bin korc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/korc /korc
USER 65532:65532
ENTRYPOINT ["/korc"]
CMD ["run"]
