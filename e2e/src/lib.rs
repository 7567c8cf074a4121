//! End-to-end scenarios against a real cluster. They run only when `KUBECONFIG`
//! names one; otherwise each test prints why and counts as skipped.
