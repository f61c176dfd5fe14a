//! The report as a mail message (RFC 8460 §5.3): `multipart/report; report-type=tlsrpt`
//! with a human-readable part and the gzip-compressed JSON as `application/tlsrpt+gzip`.

use std::io::Write;

use base64::Engine;

use crate::date;
use crate::report::{Submitter, Tally};

/// What the message needs besides the report.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The `From:` address (ours).
    pub from: &'a str,
    /// The `rua` mailto addresses.
    pub to: &'a [String],
    /// The `Date:` header value (RFC 5322).
    pub date: String,
    /// The `Message-ID:` (without angle brackets).
    pub message_id: String,
    /// A MIME boundary not found in the parts.
    pub boundary: String,
}

/// Gzip of `data` (RFC 1952).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// An RFC 5322 date of Unix time `secs` in UTC: `Mon, 07 Dec 2026 02:06:46 +0000`.
pub fn rfc5322_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let day = date::day_of(secs);
    let (y, m, d) = date::civil(day);
    let s = secs % date::DAY;
    let weekday = DAYS[(day % 7) as usize];
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} +0000", s / 3600, s / 60 % 60, s % 60)
}

/// The report message, CRLF line ends, ready for DKIM signing and the queue.
pub fn report_message(
    tally: &Tally,
    submitter: &Submitter,
    report_id: &str,
    json: &[u8],
    env: &Envelope<'_>,
) -> Vec<u8> {
    let start = date::start_of(tally.day);
    let end = date::end_of(tally.day);
    // §5.3: the file name is sender!policy-domain!begin!end!unique-id, begin and end in
    // Unix seconds.
    let begin_secs = tally.day * date::DAY;
    let filename = format!(
        "{}!{}!{}!{}!{}.json.gz",
        submitter.host,
        tally.domain,
        begin_secs,
        begin_secs + date::DAY - 1,
        report_id
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(gzip(json));
    let mut out = String::new();
    let mut h = |line: String| {
        out.push_str(&line);
        out.push_str("\r\n");
    };
    h(format!("From: {}", env.from));
    h(format!("To: {}", env.to.join(", ")));
    h(format!("Subject: Report Domain: {} Submitter: {} Report-ID: <{report_id}>", tally.domain, submitter.host));
    h(format!("Date: {}", env.date));
    h(format!("Message-ID: <{}>", env.message_id));
    h(format!("TLS-Report-Domain: {}", tally.domain));
    h(format!("TLS-Report-Submitter: {}", submitter.host));
    h("Auto-Submitted: auto-generated".into());
    h("MIME-Version: 1.0".into());
    h(format!("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"{}\"", env.boundary));
    h(String::new());
    h(format!("--{}", env.boundary));
    h("Content-Type: text/plain; charset=us-ascii".into());
    h(String::new());
    h(format!("This is an aggregate TLS report from {} for {}.", submitter.host, tally.domain));
    h(format!("Period: {start} to {end}."));
    h(format!("Successful sessions: {}; failed sessions: {}.", tally.successes, tally.failure_total()));
    h(String::new());
    h(format!("--{}", env.boundary));
    h("Content-Type: application/tlsrpt+gzip".into());
    h("Content-Transfer-Encoding: base64".into());
    h(format!("Content-Disposition: attachment;\r\n\tfilename=\"{filename}\""));
    h(String::new());
    for chunk in b64.as_bytes().chunks(76) {
        h(String::from_utf8_lossy(chunk).into_owned());
    }
    h(String::new());
    h(format!("--{}--", env.boundary));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{PolicyInfo, Tallies};
    use std::io::Read;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_796_609_206), "Mon, 07 Dec 2026 02:06:46 +0000");
    }

    #[test]
    fn message_carries_the_gzipped_report() {
        let mut t = Tallies::default();
        t.success("example.test", &PolicyInfo { kind: "sts".into(), ..Default::default() }, 0);
        let tally = &t.tallies[0];
        let who = Submitter { organization: "O".into(), contact: "c@s.test".into(), host: "s.test".into() };
        let json = br#"{"report-id":"x"}"#;
        let to = vec!["tls@example.test".to_owned()];
        let env = Envelope {
            from: "postmaster@s.test",
            to: &to,
            date: rfc5322_date(5),
            message_id: "m@s.test".into(),
            boundary: "b0".into(),
        };
        let msg = String::from_utf8(report_message(tally, &who, "x", json, &env)).unwrap();
        assert!(msg.contains("Subject: Report Domain: example.test Submitter: s.test Report-ID: <x>\r\n"), "{msg}");
        assert!(msg.contains("TLS-Report-Domain: example.test\r\n"));
        assert!(msg.contains("report-type=\"tlsrpt\""));
        assert!(msg.contains("filename=\"s.test!example.test!0!86399!x.json.gz\""));
        let body = msg.split("Content-Disposition").nth(1).unwrap().split("\r\n\r\n").nth(1).unwrap();
        let b64: String = body.lines().take_while(|l| !l.is_empty()).collect();
        let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, json);
    }
}
