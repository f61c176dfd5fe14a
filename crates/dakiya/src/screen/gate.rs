//! Screening in a session: what the connection driver asks at accept ([`Gate::start`]),
//! before the greeting ([`Gate::greet`]), after each read ([`Gate::pipelining`]), at MAIL
//! ([`Gate::helo`]), at RCPT ([`Gate::rcpt`]) and for `Received:` ([`Gate::name`]).

use crate::live::Live;
use crate::screen::early;
use crate::screen::helo;
use crate::screen::lookup::{Pending, Screener};
use crate::stream::{Interrupt, Stream, Wait};
use crate::summary::Ending;
use dakiya_config::{Screen, ScreenAction, Target};
use dakiya_metrics::Rejection;
use dakiya_proto::address::ForwardPath;
use dakiya_proto::{Enhanced, Reply, Server};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A listener's screening settings (its `screen` and `greet_delay` keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct Screening {
    /// `[screen]` applies to this listener's clients.
    pub on: bool,
    /// The wait before the greeting; zero for none.
    pub greet_delay: Duration,
}

impl Screening {
    /// What listener `l` asks for.
    pub fn of(l: &dakiya_config::Listener) -> Screening {
        Screening { on: l.screen, greet_delay: l.greet_delay }
    }
}

/// How the session must end instead of going on.
#[derive(Debug)]
pub struct Stop {
    /// The last reply (none when the client is gone).
    pub reply: Option<Reply>,
    pub ending: Ending,
}

impl Stop {
    /// The refusal to count in the metrics, when screening refused the client (not when it
    /// left, or shutdown or admission ended the wait).
    pub fn rejection(&self) -> Option<Rejection> {
        match self.ending {
            Ending::Listed => Some(Rejection::Dnsbl),
            Ending::Pregreet => Some(Rejection::EarlyTalker),
            Ending::Pipelining => Some(Rejection::Pipelining),
            _ => None,
        }
    }
}

/// One session's screening.
pub struct Gate {
    /// The screener, when `[screen]` applies to this client.
    screener: Option<Arc<Screener>>,
    pending: Pending,
    greet_delay: Duration,
    ip: IpAddr,
    /// The address the client connected to (for the `our-address` HELO check).
    local: IpAddr,
}

impl Gate {
    /// At accept: starts the DNS lookups for a client that screening applies to (not in
    /// `trusted_networks`, on a listener with `screen = true`, with `[screen]` configured).
    pub fn start(live: &Live, listener: Screening, ip: IpAddr, local: IpAddr, trusted: bool) -> Gate {
        let screener = live.screener.clone().filter(|_| listener.on && !trusted);
        let pending = screener.as_ref().map_or(Pending::Off, |s| s.start(ip));
        let greet_delay = if trusted { Duration::ZERO } else { listener.greet_delay };
        Gate { screener, pending, greet_delay, ip, local }
    }

    fn cfg(&self) -> Option<&Screen> {
        self.screener.as_deref().map(Screener::config)
    }

    /// Before the greeting: waits `greet_delay`, refusing a client that speaks meanwhile
    /// (`554 5.5.1`), then, with `reject-at-connect`, refuses a listed client with `554 5.7.1`
    /// instead of the greeting (RFC 5321 §3.1). The wait is interrupted by shutdown and by
    /// admission making room (a waiting client counts as idle, docs/screening.md).
    pub async fn greet(
        &mut self,
        stream: &mut Stream,
        input: &mut Vec<u8>,
        interrupt: &mut Interrupt,
    ) -> Result<(), Stop> {
        if !self.greet_delay.is_zero() {
            match stream.read_more(input, Instant::now() + self.greet_delay, false, interrupt).await {
                Wait::TimedOut => {}
                Wait::Data => {
                    if crate::logging::EARLY_TALKER.admit() {
                        tracing::info!(peer = %self.ip, "client refused: it spoke before the greeting");
                    }
                    return Err(early_talker(Ending::Pregreet));
                }
                Wait::Closed => return Err(Stop { reply: None, ending: Ending::Client }),
                Wait::Shutdown => {
                    let reply = Reply::new(421, Enhanced(4, 3, 2), "Service shutting down, try again later");
                    return Err(Stop { reply: Some(reply), ending: Ending::Shutdown });
                }
                Wait::Evicted => {
                    let reply = Reply::new(421, Enhanced(4, 4, 2), "Too many connections, closing this idle session");
                    return Err(Stop { reply: Some(reply), ending: Ending::Evicted });
                }
            }
        }
        if self.cfg().is_some_and(|c| c.action == ScreenAction::RejectAtConnect)
            && let Some(reply) = self.listed_reply().await
        {
            return Err(Stop { reply: Some(reply), ending: Ending::Listed });
        }
        Ok(())
    }

    /// After a read: a client that pipelined where PIPELINING was not offered (no EHLO
    /// reply yet, or HELO) is refused with `554 5.5.1` (RFC 2920 §3.1).
    pub fn pipelining(&self, server: &Server<Vec<Target>>, input: &[u8]) -> Result<(), Stop> {
        let check = self.cfg().is_some_and(|c| c.reject_pipelining);
        let offered = server.hello().is_some_and(|h| h.esmtp);
        if check && !offered && !server.in_message() && early::pipelined(input) {
            if crate::logging::EARLY_TALKER.admit() {
                tracing::info!(peer = %self.ip, "client refused: it pipelined without PIPELINING");
            }
            return Err(early_talker(Ending::Pipelining));
        }
        Ok(())
    }

    /// At MAIL: the HELO checks (`helo_checks`), for clients that have not authenticated.
    pub fn helo(&self, server: &Server<Vec<Target>>, hostname: &str) -> Result<(), Reply> {
        let Some(cfg) = self.cfg() else { return Ok(()) };
        let Some(hello) = server.hello() else { return Ok(()) };
        if server.auth_user().is_some() {
            return Ok(());
        }
        match helo::classify(&hello.name, hostname, self.local, cfg.helo) {
            None => Ok(()),
            Some(problem) => {
                if crate::logging::SCREENED.admit() {
                    tracing::info!(peer = %self.ip, check = problem.as_str(), "client refused by screening: HELO name");
                }
                Err(Reply::new(550, Enhanced(5, 7, 1), problem.text()))
            }
        }
    }

    /// At RCPT: with `reject-at-rcpt`, a listed client is refused with `554 5.7.1`; with
    /// `require_fcrdns`, a client without a forward-confirmed name gets `450 4.7.25` (RFC 7372
    /// §3.2). Mail to postmaster is exempt (RFC 5321 §4.5.1: a blocked sender can still ask
    /// to be unblocked), as are authenticated clients. A refusal comes with its reason, for
    /// the metrics.
    pub async fn rcpt(&mut self, path: &ForwardPath, authenticated: bool) -> Result<(), (Rejection, Reply)> {
        let Some((action, require_fcrdns)) = self.cfg().map(|c| (c.action, c.require_fcrdns)) else { return Ok(()) };
        let postmaster = match path {
            ForwardPath::Postmaster => true,
            ForwardPath::Mailbox(m) => m.local.eq_ignore_ascii_case("postmaster"),
        };
        if postmaster || authenticated {
            return Ok(());
        }
        if action == ScreenAction::RejectAtRcpt
            && let Some(reply) = self.listed_reply().await
        {
            return Err((Rejection::DnsblRcpt, reply));
        }
        if require_fcrdns && self.name().await.is_none() {
            if crate::logging::SCREENED.admit() {
                tracing::info!(peer = %self.ip, "client refused by screening: no forward-confirmed reverse DNS");
            }
            let text = format!("Client host rejected: reverse DNS of [{}] is not confirmed", self.ip.to_canonical());
            return Err((Rejection::Fcrdns, Reply::new(450, Enhanced(4, 7, 25), text)));
        }
        Ok(())
    }

    /// Whether a DNS allow list vouches for the client (greylisting skips it).
    pub async fn allow_listed(&mut self) -> bool {
        self.pending.findings().await.is_some_and(|f| f.verdict.allow_listed)
    }

    /// The client's forward-confirmed reverse DNS name, for `Received:`.
    pub async fn name(&mut self) -> Option<String> {
        self.pending.findings().await.and_then(|f| f.name.clone())
    }

    /// The refusal of a client the DNS lists put over the threshold, if it is.
    async fn listed_reply(&mut self) -> Option<Reply> {
        let ip = self.ip.to_canonical();
        let zone = self.pending.findings().await?.verdict.blocked_by.clone()?;
        if crate::logging::SCREENED.admit() {
            tracing::info!(peer = %ip, zone = %zone, "client refused by screening: DNS list");
        }
        Some(Reply::new(554, Enhanced(5, 7, 1), format!("Service unavailable; client [{ip}] blocked using {zone}")))
    }
}

fn early_talker(ending: Ending) -> Stop {
    let reply = Reply::new(554, Enhanced(5, 5, 1), "Protocol error: commands sent before their reply");
    Stop { reply: Some(reply), ending }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session carries a gate, screened or not (docs/hardening.md, "Memory").
    #[test]
    fn a_gate_is_small() {
        let size = std::mem::size_of::<Gate>();
        assert!(size <= 192, "Gate is {size} bytes");
    }
}
