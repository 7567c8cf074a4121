//! The proxies' integration tests, one binary so the harness in `support`
//! (real PostgreSQL, MariaDB, operator, fake and real kube clients) compiles
//! and links once. Each module's header says what it proves.

mod access;
mod dashboard;
mod demo;
mod kube;
mod kube_adversarial;
mod kube_bad_input;
mod mfa;
mod mysql;
mod postgres;
mod postgres_bad_input;
mod session_logs;
mod support;
