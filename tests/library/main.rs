//! Tests of the library surface a user meets first: the cargo examples and the `models` binary.
//! (A test target of its own, apart from `tests/integration`: `cargo test --test library`.)

mod examples;
mod models_cli;
