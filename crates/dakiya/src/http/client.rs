//! The routes of `role = "http"` and `"https"` listeners (docs/clients.md): client
//! auto-configuration (Thunderbird autoconfig, Microsoft Autodiscover, Apple profiles), the
//! MTA-STS policy for `mta-sts.DOMAIN` (RFC 8461 §3.2), and ACME HTTP-01 answers. Each
//! request reads the configuration in force and the listeners as bound, so a reload or a
//! port chosen at start shows at once. The documents themselves are built in
//! crates/publish; anything from the client (Host, the email address) is checked there and
//! escaped by its XML writer.

use super::acme::AcmeChallenges;
use super::{HttpBody, Routes, method_not_allowed, not_found, respond, text};
use crate::shared::Shared;
use dakiya_config::Config;
use dakiya_publish::{Domain, Services, autoconfig, autodiscover, mobileconfig, mtasts, parse_address};
use hyper::body::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use std::sync::Arc;

/// What an `http`/`https` listener answers.
pub struct ClientRoutes {
    /// The configuration in force and the bound listeners.
    pub shared: Arc<Shared>,
    /// Pending ACME HTTP-01 challenges.
    pub acme: Arc<AcmeChallenges>,
}

const AUTOCONFIG: [&str; 2] = ["/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"];
const AUTODISCOVER: &str = "/autodiscover/autodiscover.xml";
const MTA_STS: &str = "/.well-known/mta-sts.txt";
const ACME: &str = "/.well-known/acme-challenge/";

impl Routes for ClientRoutes {
    async fn route(&self, req: &Parts) -> Response<HttpBody> {
        let path = req.uri.path();
        if path.eq_ignore_ascii_case(AUTODISCOVER) {
            // Only POST, with a body: an empty POST reaches here too.
            return if req.method == Method::POST {
                bad_request("autodiscover needs a request body")
            } else {
                method_not_allowed("POST")
            };
        }
        if req.method != Method::GET && req.method != Method::HEAD {
            return method_not_allowed("GET, HEAD");
        }
        let live = self.shared.live.get();
        let cfg = &live.config;
        if path == MTA_STS {
            return mta_sts(cfg, req);
        }
        if let Some(token) = path.strip_prefix(ACME) {
            return match self.acme.get(token) {
                Some(answer) => text(StatusCode::OK, answer),
                None => not_found(),
            };
        }
        if AUTOCONFIG.contains(&path) {
            return match domain_of(cfg, req, "autoconfig.") {
                Ok((domain, _)) => respond(
                    StatusCode::OK,
                    autoconfig::CONTENT_TYPE,
                    autoconfig::document(&domain, &self.services(cfg)),
                ),
                Err(r) => r,
            };
        }
        if let Some(name) = path.strip_prefix("/apple/").and_then(|p| p.strip_suffix(".mobileconfig")) {
            return self.apple(cfg, req, name);
        }
        not_found()
    }

    fn body_limit(&self, req: &Parts) -> usize {
        let autodiscover = req.method == Method::POST && req.uri.path().eq_ignore_ascii_case(AUTODISCOVER);
        if autodiscover { autodiscover::MAX_REQUEST } else { 0 }
    }

    async fn route_body(&self, _req: &Parts, body: Bytes) -> Response<HttpBody> {
        let (address, domain) = match autodiscover::parse_request(&body) {
            Ok(x) => x,
            Err(e) => return bad_request(&e.to_string()),
        };
        let live = self.shared.live.get();
        if !live.config.is_local_domain(&domain.ascii) {
            return not_found();
        }
        respond(
            StatusCode::OK,
            autodiscover::CONTENT_TYPE,
            autodiscover::response(&address, &self.services(&live.config)),
        )
    }
}

impl ClientRoutes {
    /// The services clients are told about: configured names, ports as bound.
    fn services(&self, cfg: &Config) -> Services {
        Services::with_listeners(cfg, &self.shared.health.listeners())
    }

    /// `/apple/NAME.mobileconfig[?emailaddress=…]`: NAME is a local domain, or anything
    /// when the address names one.
    fn apple(&self, cfg: &Config, req: &Parts, name: &str) -> Response<HttpBody> {
        let (domain, address) = match email_parameter(req) {
            Err(r) => return r,
            Ok(Some((address, domain))) => (domain, Some(address)),
            Ok(None) => match Domain::new(name) {
                Some(d) => (d, None),
                None => return not_found(),
            },
        };
        if !cfg.is_local_domain(&domain.ascii) {
            return not_found();
        }
        match mobileconfig::profile(&domain, address.as_deref(), &self.services(cfg)) {
            Some(body) => {
                let mut r = respond(StatusCode::OK, mobileconfig::CONTENT_TYPE, body);
                let disposition = format!("attachment; filename=\"{}.mobileconfig\"", domain.ascii);
                if let Ok(v) = hyper::header::HeaderValue::from_str(&disposition) {
                    r.headers_mut().insert(hyper::header::CONTENT_DISPOSITION, v);
                }
                r
            }
            None => not_found(),
        }
    }
}

/// The MTA-STS policy, for `Host: mta-sts.DOMAIN` of a local domain only (RFC 8461 §3.3:
/// the policy host is that name); a policy of mode `none` is still served, it is how a
/// policy is withdrawn (§8.3).
fn mta_sts(cfg: &Config, req: &Parts) -> Response<HttpBody> {
    let Some(host) = host(req) else { return not_found() };
    match host.ascii.strip_prefix("mta-sts.") {
        Some(d) if cfg.is_local_domain(d) => {
            respond(StatusCode::OK, mtasts::CONTENT_TYPE, mtasts::policy(&cfg.mta_sts))
        }
        _ => not_found(),
    }
}

/// The local domain a request is about: from `emailaddress=` when given, else the Host
/// (without `prefix`, as in `autoconfig.example.org`). Unknown domains are 404.
fn domain_of(cfg: &Config, req: &Parts, prefix: &str) -> Result<(Domain, Option<String>), Response<HttpBody>> {
    let (domain, address) = match email_parameter(req)? {
        Some((address, domain)) => (domain, Some(address)),
        None => {
            let host = host(req).ok_or_else(not_found)?;
            let name = host.ascii.strip_prefix(prefix).unwrap_or(&host.ascii);
            (Domain::new(name).ok_or_else(not_found)?, None)
        }
    };
    if cfg.is_local_domain(&domain.ascii) { Ok((domain, address)) } else { Err(not_found()) }
}

/// The `emailaddress` query parameter: absent, or an address (anything else is 400).
fn email_parameter(req: &Parts) -> Result<Option<(String, Domain)>, Response<HttpBody>> {
    let Some(query) = req.uri.query() else { return Ok(None) };
    let Some((_, value)) =
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k.eq_ignore_ascii_case("emailaddress"))
    else {
        return Ok(None);
    };
    parse_address(&value).map(Some).ok_or_else(|| bad_request("emailaddress is not an email address"))
}

/// The Host header (or the authority of an absolute URI) without its port, as a domain.
fn host(req: &Parts) -> Option<Domain> {
    let raw = match req.headers.get(hyper::header::HOST) {
        Some(v) => v.to_str().ok()?.to_owned(),
        None => req.uri.host()?.to_owned(),
    };
    let name = match raw.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => raw.as_str(),
    };
    Domain::new(name)
}

fn bad_request(why: &str) -> Response<HttpBody> {
    text(StatusCode::BAD_REQUEST, format!("bad request: {why}\n"))
}
