//! TLS-RPT counts (RFC 8460 §4): per policy domain and UTC day, the sessions that went well
//! and the failures by result type and MX host; kept as JSON so they survive a restart; and
//! the aggregate report made from one day's counts.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::date;

/// The result types of RFC 8460 §4.3 that this sender can observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ResultType {
    /// The MX host did not offer STARTTLS (§4.3.1.1), or the handshake failed.
    StarttlsNotSupported,
    /// The certificate does not name the MX host (§4.3.1.2).
    CertificateHostMismatch,
    /// The certificate has expired (§4.3.1.2).
    CertificateExpired,
    /// The certificate does not chain to a trusted root (§4.3.1.2).
    CertificateNotTrusted,
    /// Any other validation failure (§4.3.1.3), e.g. an MX host not in the policy.
    ValidationFailure,
    /// The policy could not be fetched (§4.3.2.1).
    StsPolicyFetchError,
    /// The policy was fetched but is not valid (§4.3.2.1).
    StsPolicyInvalid,
    /// The policy server's certificate did not validate (§4.3.2.1).
    StsWebpkiInvalid,
    /// DANE was required, but the host had no DNSSEC-validated TLSA records (§4.3.2.2).
    DaneRequired,
    /// The TLSA lookup failed DNSSEC validation (§4.3.2.2).
    DnssecInvalid,
    /// None of the host's TLSA records is usable (§4.3.2.2).
    TlsaInvalid,
}

impl ResultType {
    /// The name in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::TlsaInvalid => "tlsa-invalid",
        }
    }
}

/// The policy a count is about (RFC 8460 §4.3 `policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// `sts`, or `no-policy-found` when fetching failed and nothing was cached.
    pub kind: String,
    /// The policy's lines (`policy-string`).
    pub lines: Vec<String>,
    /// The policy's MX patterns (`mx-host`).
    pub mx_host: Vec<String>,
}

/// One failure bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    /// The result type.
    pub result: ResultType,
    /// The MX host the session was with, if one was reached.
    pub mx: Option<String>,
    /// How many sessions.
    pub count: u64,
}

/// The counts of one policy domain on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The policy domain (the recipient domain).
    pub domain: String,
    /// The UTC day number ([`date::day_of`]).
    pub day: u64,
    /// The policy last seen that day.
    pub policy: PolicyInfo,
    /// Sessions that met the policy.
    pub successes: u64,
    /// The failures.
    pub failures: Vec<FailureCount>,
}

impl Tally {
    /// All failures counted.
    pub fn failure_total(&self) -> u64 {
        self.failures.iter().map(|f| f.count).sum()
    }
}

/// All counts not yet reported. Serialized as JSON for the durable file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallies {
    /// The counts, one per domain and day.
    pub tallies: Vec<Tally>,
}

impl Tallies {
    fn entry(&mut self, domain: &str, day: u64, policy: &PolicyInfo) -> &mut Tally {
        let domain = domain.to_ascii_lowercase();
        let i = match self.tallies.iter().position(|t| t.domain == domain && t.day == day) {
            Some(i) => i,
            None => {
                self.tallies.push(Tally {
                    domain,
                    day,
                    policy: PolicyInfo::default(),
                    successes: 0,
                    failures: Vec::new(),
                });
                self.tallies.len() - 1
            }
        };
        let tally = &mut self.tallies[i];
        tally.policy = policy.clone();
        tally
    }

    /// Counts a session that met the policy, at `now`.
    pub fn success(&mut self, domain: &str, policy: &PolicyInfo, now: u64) {
        self.entry(domain, date::day_of(now), policy).successes += 1;
    }

    /// Counts a failure of `result` (with the MX host, if any), at `now`.
    pub fn failure(&mut self, domain: &str, policy: &PolicyInfo, result: ResultType, mx: Option<&str>, now: u64) {
        let tally = self.entry(domain, date::day_of(now), policy);
        let mx = mx.map(str::to_owned);
        match tally.failures.iter_mut().find(|f| f.result == result && f.mx == mx) {
            Some(f) => f.count += 1,
            None => tally.failures.push(FailureCount { result, mx, count: 1 }),
        }
    }

    /// Removes and returns the counts of days before `now`'s day (the ones due for a
    /// report); with `all`, today's too (a report asked for by the operator or a test).
    pub fn take_due(&mut self, now: u64, all: bool) -> Vec<Tally> {
        let today = date::day_of(now);
        let (due, kept) = std::mem::take(&mut self.tallies).into_iter().partition(|t| all || t.day < today);
        self.tallies = kept;
        due
    }

    /// The durable form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`Tallies::to_json`]'s form; `None` if damaged.
    pub fn from_json(text: &str) -> Option<Tallies> {
        serde_json::from_str(text).ok()
    }
}

/// Who sends the report (RFC 8460 §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// `contact-info`: an address to write to about the reports.
    pub contact: String,
    /// The host name reports are submitted from (`TLS-Report-Submitter`).
    pub host: String,
}

/// The aggregate report for one tally (RFC 8460 §4.4), with `report_id`.
pub fn report_json(tally: &Tally, submitter: &Submitter, report_id: &str) -> Value {
    let details: Vec<Value> = tally
        .failures
        .iter()
        .map(|f| {
            let mut d = json!({ "result-type": f.result.as_str(), "failed-session-count": f.count });
            if let Some(mx) = &f.mx {
                d["receiving-mx-hostname"] = json!(mx);
            }
            d
        })
        .collect();
    let mut policy = json!({ "policy-type": tally.policy.kind, "policy-domain": tally.domain });
    if !tally.policy.lines.is_empty() {
        policy["policy-string"] = json!(tally.policy.lines);
    }
    if !tally.policy.mx_host.is_empty() {
        policy["mx-host"] = json!(tally.policy.mx_host);
    }
    json!({
        "organization-name": submitter.organization,
        "date-range": { "start-datetime": date::start_of(tally.day), "end-datetime": date::end_of(tally.day) },
        "contact-info": submitter.contact,
        "report-id": report_id,
        "policies": [{
            "policy": policy,
            "summary": {
                "total-successful-session-count": tally.successes,
                "total-failure-session-count": tally.failure_total(),
            },
            "failure-details": details,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> PolicyInfo {
        PolicyInfo {
            kind: "sts".into(),
            lines: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["mx.example.test".into()],
        }
    }

    #[test]
    fn counts_by_day_and_type() {
        let mut t = Tallies::default();
        let day1 = 19_000 * date::DAY + 5;
        t.success("Example.test", &sts(), day1);
        t.success("example.test", &sts(), day1 + 10);
        t.failure("example.test", &sts(), ResultType::StarttlsNotSupported, Some("mx.example.test"), day1);
        t.failure("example.test", &sts(), ResultType::StarttlsNotSupported, Some("mx.example.test"), day1);
        t.failure("example.test", &sts(), ResultType::CertificateHostMismatch, Some("mx.example.test"), day1);
        t.success("example.test", &sts(), day1 + date::DAY);
        assert_eq!(t.tallies.len(), 2);
        let back = Tallies::from_json(&t.to_json()).unwrap();
        assert_eq!(back, t, "the durable form round-trips");

        let due = t.take_due(day1 + date::DAY, false);
        assert_eq!(due.len(), 1, "only the past day is due");
        assert_eq!(t.tallies.len(), 1);
        let day = &due[0];
        assert_eq!((day.successes, day.failure_total()), (2, 3));

        let who = Submitter {
            organization: "Org".into(),
            contact: "postmaster@sender.test".into(),
            host: "sender.test".into(),
        };
        let v = report_json(day, &who, "r1");
        assert_eq!(v["report-id"], "r1");
        assert_eq!(v["date-range"]["start-datetime"], "2022-01-08T00:00:00Z");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-domain"], "example.test");
        assert_eq!(p["policy"]["mx-host"][0], "mx.example.test");
        assert_eq!(p["summary"]["total-successful-session-count"], 2);
        assert_eq!(p["summary"]["total-failure-session-count"], 3);
        assert_eq!(p["failure-details"][0]["result-type"], "starttls-not-supported");
        assert_eq!(p["failure-details"][0]["failed-session-count"], 2);
        assert_eq!(p["failure-details"][1]["result-type"], "certificate-host-mismatch");
        assert_eq!(t.take_due(day1 + date::DAY, true).len(), 1, "all: today's too");
        assert!(Tallies::from_json("{").is_none());
    }
}
