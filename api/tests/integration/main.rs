//! The API crate's integration tests (CRDs, CEL rules, examples, wire types,
//! the engine's properties), in one binary that compiles and links once.

mod cel_rules;
mod crds;
mod engine_properties;
mod examples;
mod wire_types;
