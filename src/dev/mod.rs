//! Tooling apart from the product: a private mail stack on loopback, the demo
//! and the benchmarks built on it, and generated rule sets. Behind the `dev`
//! cargo feature (on by default); a production build
//! (`--no-default-features`) has none of it. Only the command line imports
//! this module; it may import anything.

pub mod bench;
pub mod bench_all;
pub mod demo;
pub mod devstack;
mod generate;

pub use generate::generate_rules;
