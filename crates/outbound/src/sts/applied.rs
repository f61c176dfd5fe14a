//! The MTA-STS policy that applies to one delivery, as delivery and the TLS-RPT counts see it.

use dakiya_mtasts::report::PolicyInfo;
use dakiya_mtasts::{Mode, Policy};

/// The policy that applies to one delivery.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// The policy domain (the recipient domain, lower case).
    pub(crate) domain: String,
    /// The policy; `None` when fetching failed and nothing was cached (counted, then
    /// delivered as without a policy).
    pub(crate) policy: Option<Policy>,
}

impl Applied {
    /// Whether the policy is enforced (RFC 8461 §5: `mode: enforce`).
    pub(crate) fn enforce(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.mode == Mode::Enforce)
    }

    /// The policy as TLS-RPT describes it (RFC 8460 §4.3).
    pub(crate) fn info(&self) -> PolicyInfo {
        match &self.policy {
            Some(p) => PolicyInfo { kind: "sts".into(), lines: p.lines(), mx_host: p.mx.clone() },
            None => PolicyInfo { kind: "no-policy-found".into(), ..PolicyInfo::default() },
        }
    }
}
