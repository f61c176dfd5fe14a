//! The MTA-STS policy (RFC 8461 §3.2) and its id for the `_mta-sts` TXT record (§3.1).

use dakiya_config::MtaSts;

/// The media type of the policy (RFC 8461 §3.2).
pub const CONTENT_TYPE: &str = "text/plain";

/// The policy file: `version`, `mode`, one `mx` line per pattern, `max_age` in seconds;
/// CRLF line ends (§3.2 allows LF too; CRLF is what the ABNF writes).
pub fn policy(p: &MtaSts) -> String {
    let mut out = String::from("version: STSv1\r\n");
    out.push_str(&format!("mode: {}\r\n", p.mode.as_str()));
    for mx in &p.mx {
        out.push_str(&format!("mx: {mx}\r\n"));
    }
    out.push_str(&format!("max_age: {}\r\n", p.max_age.as_secs()));
    out
}

/// The policy id: the first 32 hex digits of the SHA-256 of the policy text (§3.1 allows
/// 1 to 32 letters and digits), so the id changes exactly when the served policy does.
pub fn policy_id(policy_text: &str) -> String {
    crate::hex(&crate::sha256(policy_text.as_bytes()))[..32].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_config::MtaStsMode;
    use std::time::Duration;

    #[test]
    fn policy_and_id() {
        let mut p = MtaSts {
            mode: MtaStsMode::Enforce,
            max_age: Duration::from_secs(86_400),
            mx: vec!["mail.example.org".into(), "*.example.net".into()],
        };
        let text = policy(&p);
        assert_eq!(
            text,
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\nmax_age: 86400\r\n"
        );
        let id = policy_id(&text);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(id, policy_id(&policy(&p)));
        p.mode = MtaStsMode::Testing;
        assert_ne!(id, policy_id(&policy(&p)));
    }
}
