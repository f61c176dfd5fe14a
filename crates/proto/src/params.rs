//! ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 `esmtp-param`) for the extensions
//! dakiya implements: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), and DSN's RET,
//! ENVID, NOTIFY and ORCPT (RFC 3461).

/// Why a parameter list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// A keyword we do not implement (RFC 5321 §4.1.1.11: 555).
    #[error("parameter {0} not recognised")]
    Unknown(String),
    /// A known keyword with a malformed or out-of-range value (501).
    #[error("bad value for {0}")]
    BadValue(&'static str),
    /// The same keyword twice.
    #[error("duplicate parameter {0}")]
    Duplicate(&'static str),
    /// Not `keyword[=value]`.
    #[error("malformed parameter")]
    Syntax,
}

/// The body type declared with BODY= (RFC 6152 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    /// `BODY=7BIT` or absent.
    #[default]
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

impl BodyType {
    /// The value as written after `BODY=`.
    pub fn keyword(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
        }
    }
}

/// RET= of RFC 3461 §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// Return the full message in a failure DSN.
    Full,
    /// Return only the headers.
    Hdrs,
}

impl Ret {
    /// The value as written after `RET=`.
    pub fn keyword(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= declared by the client (RFC 1870 §6).
    pub size: Option<u64>,
    /// BODY=.
    pub body: BodyType,
    /// SMTPUTF8 given (RFC 6531 §3.4).
    pub smtputf8: bool,
    /// RET= (RFC 3461 §4.3).
    pub ret: Option<Ret>,
    /// ENVID=, decoded from xtext (RFC 3461 §4.4).
    pub envid: Option<String>,
    /// REQUIRETLS given (RFC 8689 §4.1): relay only over authenticated TLS.
    pub requiretls: bool,
}

/// NOTIFY= of RFC 3461 §4.1: the kinds of notice a recipient asked for. All false is
/// `NOTIFY=NEVER` ([`Notify::NEVER`], also the `Default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Notify {
    /// NOTIFY=SUCCESS.
    pub success: bool,
    /// NOTIFY=FAILURE.
    pub failure: bool,
    /// NOTIFY=DELAY.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`: no notice at all.
    pub const NEVER: Notify = Notify { success: false, failure: false, delay: false };

    /// NOTIFY=NEVER.
    pub fn is_never(&self) -> bool {
        !self.success && !self.failure && !self.delay
    }

    /// The keywords given, in the order SUCCESS, FAILURE, DELAY; none for NEVER.
    pub fn keywords(self) -> impl Iterator<Item = &'static str> {
        [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
    }
}

/// The value as written after `NOTIFY=`: `NEVER` or a comma list of SUCCESS, FAILURE, DELAY
/// (RFC 3461 §4.1).
impl std::fmt::Display for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_never() {
            return f.write_str("NEVER");
        }
        for (i, word) in self.keywords().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(word)?;
        }
        Ok(())
    }
}

/// Parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// NOTIFY= (RFC 3461 §4.1); `None` when absent.
    pub notify: Option<Notify>,
    /// ORCPT= as `(addr-type, decoded address)` (RFC 3461 §4.2).
    pub orcpt: Option<(String, String)>,
}

/// Splits `KEYWORD[=value]`, checking `esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`
/// and `esmtp-value = 1*(%d33-60 / %d62-126)` (plus UTF-8 when SMTPUTF8, RFC 6531 §3.3).
fn split_param(p: &str) -> Result<(String, Option<&str>), ParamError> {
    let (k, v) = match p.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (p, None),
    };
    let key_ok = k.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let val_ok =
        v.is_none_or(|v| !v.is_empty() && v.chars().all(|c| (c > ' ' && c != '=' && c != '\u{7f}') && !c.is_control()));
    if key_ok && val_ok { Ok((k.to_ascii_uppercase(), v)) } else { Err(ParamError::Syntax) }
}

/// Parses the parameters after `MAIL FROM:<path>`.
pub fn parse_mail_params<'a>(params: impl Iterator<Item = &'a str>) -> Result<MailParams, ParamError> {
    let mut out = MailParams::default();
    let mut seen_body = false;
    for p in params {
        let (key, value) = split_param(p)?;
        match key.as_str() {
            "SIZE" => {
                let v = value.ok_or(ParamError::BadValue("SIZE"))?;
                if out.size.is_some() {
                    return Err(ParamError::Duplicate("SIZE"));
                }
                // RFC 1870 §3: size-value = 1*20DIGIT.
                if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParamError::BadValue("SIZE"));
                }
                out.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            "BODY" => {
                if std::mem::replace(&mut seen_body, true) {
                    return Err(ParamError::Duplicate("BODY"));
                }
                out.body = match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => BodyType::SevenBit,
                    Some("8BITMIME") => BodyType::EightBitMime,
                    // BINARYMIME (RFC 3030) is not advertised.
                    _ => return Err(ParamError::BadValue("BODY")),
                }
            }
            "SMTPUTF8" => {
                if value.is_some() {
                    return Err(ParamError::BadValue("SMTPUTF8"));
                }
                if std::mem::replace(&mut out.smtputf8, true) {
                    return Err(ParamError::Duplicate("SMTPUTF8"));
                }
            }
            "REQUIRETLS" => {
                // RFC 8689 §4.1: a keyword without a value.
                if value.is_some() {
                    return Err(ParamError::BadValue("REQUIRETLS"));
                }
                if std::mem::replace(&mut out.requiretls, true) {
                    return Err(ParamError::Duplicate("REQUIRETLS"));
                }
            }
            "RET" => {
                if out.ret.is_some() {
                    return Err(ParamError::Duplicate("RET"));
                }
                out.ret = Some(match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("FULL") => Ret::Full,
                    Some("HDRS") => Ret::Hdrs,
                    _ => return Err(ParamError::BadValue("RET")),
                });
            }
            "ENVID" => {
                if out.envid.is_some() {
                    return Err(ParamError::Duplicate("ENVID"));
                }
                let v = value.ok_or(ParamError::BadValue("ENVID"))?;
                // RFC 3461 §4.4: at most 100 characters, xtext-encoded printable ASCII.
                if v.len() > 100 {
                    return Err(ParamError::BadValue("ENVID"));
                }
                out.envid = Some(decode_xtext(v).ok_or(ParamError::BadValue("ENVID"))?);
            }
            // RFC 4954 §5: AUTH=<mailbox> or AUTH=<> names the identity that submitted the
            // message. We record our own authenticated identity instead, so the value is only
            // checked for form and otherwise ignored.
            "AUTH" => {
                let v = value.ok_or(ParamError::BadValue("AUTH"))?;
                if v != "<>" && decode_xtext(v).is_none() {
                    return Err(ParamError::BadValue("AUTH"));
                }
            }
            _ => return Err(ParamError::Unknown(key)),
        }
    }
    Ok(out)
}

/// Parses the parameters after `RCPT TO:<path>`.
pub fn parse_rcpt_params<'a>(params: impl Iterator<Item = &'a str>) -> Result<RcptParams, ParamError> {
    let mut out = RcptParams::default();
    for p in params {
        let (key, value) = split_param(p)?;
        match key.as_str() {
            "NOTIFY" => {
                if out.notify.is_some() {
                    return Err(ParamError::Duplicate("NOTIFY"));
                }
                out.notify = Some(parse_notify(value.ok_or(ParamError::BadValue("NOTIFY"))?)?);
            }
            "ORCPT" => {
                if out.orcpt.is_some() {
                    return Err(ParamError::Duplicate("ORCPT"));
                }
                let v = value.ok_or(ParamError::BadValue("ORCPT"))?;
                // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters.
                let (kind, addr) = v.split_once(';').ok_or(ParamError::BadValue("ORCPT"))?;
                let kind_ok = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if v.len() > 500 || !kind_ok {
                    return Err(ParamError::BadValue("ORCPT"));
                }
                let decoded = decode_xtext(addr).ok_or(ParamError::BadValue("ORCPT"))?;
                if decoded.is_empty() {
                    return Err(ParamError::BadValue("ORCPT"));
                }
                out.orcpt = Some((kind.to_ascii_lowercase(), decoded));
            }
            _ => return Err(ParamError::Unknown(key)),
        }
    }
    Ok(out)
}

/// `NOTIFY=NEVER` or a comma list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1); NEVER cannot
/// be combined.
fn parse_notify(v: &str) -> Result<Notify, ParamError> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Ok(Notify::default());
    }
    let mut n = Notify::default();
    for item in v.split(',') {
        let flag = match item.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut n.success,
            "FAILURE" => &mut n.failure,
            "DELAY" => &mut n.delay,
            _ => return Err(ParamError::BadValue("NOTIFY")),
        };
        if std::mem::replace(flag, true) {
            return Err(ParamError::BadValue("NOTIFY"));
        }
    }
    Ok(n)
}

/// Decodes xtext (RFC 3461 §4): `+XX` with two uppercase hex digits stands for one octet;
/// other characters are `!`..`~` except `+` and `=`. The result must be UTF-8.
pub fn decode_xtext(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = b.get(i + 1..i + 3)?;
                if !hex.iter().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'!'..=b'~' if b[i] != b'=' => {
                out.push(b[i]);
                i += 1;
            }
            // RFC 6533 lets utf-8-addr-xtext carry UTF-8 directly.
            c if c >= 0x80 => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a string as xtext (RFC 3461 §4).
pub fn encode_xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(s: &str) -> Result<MailParams, ParamError> {
        parse_mail_params(s.split(' ').filter(|p| !p.is_empty()))
    }
    fn rcpt(s: &str) -> Result<RcptParams, ParamError> {
        parse_rcpt_params(s.split(' ').filter(|p| !p.is_empty()))
    }

    #[test]
    fn mail_params() {
        let p = mail("SIZE=1000 body=8bitmime SMTPUTF8 RET=HDRS ENVID=abc+2Bdef").unwrap();
        assert_eq!(p.size, Some(1000));
        assert_eq!(p.body, BodyType::EightBitMime);
        assert!(p.smtputf8);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("abc+def"));
        assert_eq!(mail("").unwrap(), MailParams::default());
        assert_eq!(mail("SIZE=99999999999999999999").unwrap().size, Some(u64::MAX));
    }

    #[test]
    fn mail_param_errors() {
        assert_eq!(mail("FOO=bar"), Err(ParamError::Unknown("FOO".into())));
        assert_eq!(mail("SIZE=abc"), Err(ParamError::BadValue("SIZE")));
        assert_eq!(mail("SIZE"), Err(ParamError::BadValue("SIZE")));
        assert_eq!(mail("SIZE=1 SIZE=2"), Err(ParamError::Duplicate("SIZE")));
        assert_eq!(mail("BODY=BINARYMIME"), Err(ParamError::BadValue("BODY")));
        assert_eq!(mail("BODY=7BIT BODY=7BIT"), Err(ParamError::Duplicate("BODY")));
        assert_eq!(mail("SMTPUTF8=yes"), Err(ParamError::BadValue("SMTPUTF8")));
        assert!(mail("requiretls").unwrap().requiretls);
        assert_eq!(mail("REQUIRETLS=1"), Err(ParamError::BadValue("REQUIRETLS")));
        assert_eq!(mail("REQUIRETLS REQUIRETLS"), Err(ParamError::Duplicate("REQUIRETLS")));
        assert_eq!(mail("RET=ALL"), Err(ParamError::BadValue("RET")));
        assert_eq!(mail("ENVID=a+zz"), Err(ParamError::BadValue("ENVID")));
        assert_eq!(mail(&format!("ENVID={}", "a".repeat(101))), Err(ParamError::BadValue("ENVID")));
        assert_eq!(mail("=x"), Err(ParamError::Syntax));
        assert_eq!(mail("SIZE="), Err(ParamError::Syntax));
        assert_eq!(mail("SIZE=1=2"), Err(ParamError::Syntax));
    }

    #[test]
    fn rcpt_params() {
        let p = rcpt("NOTIFY=success,DELAY ORCPT=rfc822;a+2Bb@example.test").unwrap();
        assert_eq!(p.notify, Some(Notify { success: true, failure: false, delay: true }));
        assert_eq!(p.orcpt, Some(("rfc822".into(), "a+b@example.test".into())));
        assert!(rcpt("NOTIFY=NEVER").unwrap().notify.unwrap().is_never());
        assert_eq!(rcpt("NOTIFY=NEVER,SUCCESS"), Err(ParamError::BadValue("NOTIFY")));
        assert_eq!(rcpt("NOTIFY=FAILURE,FAILURE"), Err(ParamError::BadValue("NOTIFY")));
        assert_eq!(rcpt("ORCPT=a@b"), Err(ParamError::BadValue("ORCPT")));
        assert_eq!(rcpt("ORCPT=rfc822;"), Err(ParamError::BadValue("ORCPT")));
        assert_eq!(rcpt("SIZE=1"), Err(ParamError::Unknown("SIZE".into())));
    }

    #[test]
    fn parameter_values_are_written_as_parsed() {
        for value in ["NEVER", "SUCCESS", "FAILURE,DELAY", "SUCCESS,FAILURE,DELAY", "SUCCESS,DELAY"] {
            let notify = parse_notify(value).unwrap();
            assert_eq!(notify.to_string(), value);
            assert_eq!(parse_notify(&notify.to_string()), Ok(notify));
        }
        assert_eq!(Notify::NEVER, Notify::default());
        assert_eq!(parse_notify("delay,success").unwrap().to_string(), "SUCCESS,DELAY");
        for body in [BodyType::SevenBit, BodyType::EightBitMime] {
            assert_eq!(mail(&format!("BODY={}", body.keyword())).unwrap().body, body);
        }
        for ret in [Ret::Full, Ret::Hdrs] {
            assert_eq!(mail(&format!("RET={}", ret.keyword())).unwrap().ret, Some(ret));
        }
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["plain", "a+b=c d", "ünï"] {
            assert_eq!(decode_xtext(&encode_xtext(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_xtext("+2b"), None, "hex must be uppercase");
        assert_eq!(decode_xtext("+2"), None);
    }
}
