//! The end-to-end suite against a real API server (`KUBECONFIG` or the
//! private kube-apiserver kit), in one binary; every test is `#[ignore]`d so
//! `cargo test` alone skips it, and `scripts/test.sh` runs it with
//! `--ignored --test-threads=1`. Each module's header says what it proves.

mod chart;
mod databases;
mod ha;
mod kube_proxy;
mod mfa;
mod node;
mod resources;
mod webhooks;
