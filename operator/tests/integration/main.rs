//! The operator's integration tests, one binary so `support` and the
//! fixtures' loaders compile and link once. Each module's header says what it
//! proves.

mod admission;
mod controllers;
mod deadbolt_ca;
mod lockview;
mod mfa_lockout;
mod support;
