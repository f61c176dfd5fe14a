//! The in-memory zone and how it answers one query, without I/O.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_resolver::Name;
use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, SOA, TXT};
use hickory_resolver::proto::rr::{RData, Record, RecordType};

/// A fault a name answers with instead of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ServFail,
    Refused,
    NoAnswer,
}

/// The longest chain of CNAMEs followed inside the zone, as a guard against loops.
const MAX_CNAME_CHAIN: usize = 8;

/// Records and faults by owner name, built with chained calls:
///
/// ```
/// # use dakiya_route::testdns::Zone;
/// let zone = Zone::new()
///     .mx("example.test", 10, "mx1.example.test")
///     .a("mx1.example.test", [127, 0, 0, 2].into())
///     .null_mx("nomail.test")
///     .servfail("broken.test");
/// ```
///
/// Names may be ASCII (underscores allowed, for `_dmarc` and `_domainkey`) or UTF-8 (IDNA);
/// a trailing dot is optional. A name with no records and no records below it answers
/// NXDOMAIN; an existing name without the asked type answers NOERROR with no answers
/// (NODATA), with an SOA in the authority section either way.
///
/// # Panics
/// The builder methods panic on a name that is not a valid DNS name: this is test code.
#[derive(Debug, Clone)]
pub struct Zone {
    ttl: u32,
    records: BTreeMap<Name, Vec<RData>>,
    faults: BTreeMap<Name, Fault>,
}

impl Default for Zone {
    fn default() -> Self {
        Zone::new()
    }
}

impl Zone {
    /// An empty zone whose records have a TTL of 60 seconds.
    pub fn new() -> Zone {
        Zone { ttl: 60, records: BTreeMap::new(), faults: BTreeMap::new() }
    }

    /// Sets the TTL of every record and the negative-caching TTL (0: resolvers should not cache).
    pub fn ttl(mut self, seconds: u32) -> Zone {
        self.ttl = seconds;
        self
    }

    /// Adds an MX record; `exchange` `"."` makes a null MX (RFC 7505).
    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Zone {
        self.add(name, RData::MX(MX::new(preference, fqdn(exchange))))
    }

    /// Adds the null MX of RFC 7505: one MX with preference 0 and exchange ".".
    pub fn null_mx(self, name: &str) -> Zone {
        self.mx(name, 0, ".")
    }

    /// Adds an A record.
    pub fn a(self, name: &str, addr: Ipv4Addr) -> Zone {
        self.add(name, RData::A(A(addr)))
    }

    /// Adds an AAAA record.
    pub fn aaaa(self, name: &str, addr: Ipv6Addr) -> Zone {
        self.add(name, RData::AAAA(AAAA(addr)))
    }

    /// Adds a TXT record holding `text`, split into strings of at most 255 octets as the
    /// wire format requires (long DKIM keys); readers join them back (RFC 7208 §3.3).
    pub fn txt(self, name: &str, text: &str) -> Zone {
        let mut parts = Vec::new();
        let mut part = String::new();
        for ch in text.chars() {
            if part.len() + ch.len_utf8() > 255 {
                parts.push(std::mem::take(&mut part));
            }
            part.push(ch);
        }
        parts.push(part);
        self.add(name, RData::TXT(TXT::new(parts)))
    }

    /// Adds a TXT record made of exactly these strings (each at most 255 octets).
    pub fn txt_parts(self, name: &str, parts: &[&str]) -> Zone {
        self.add(name, RData::TXT(TXT::new(parts.iter().map(|p| p.to_string()).collect())))
    }

    /// Adds a PTR record for `addr` (owned by its `in-addr.arpa` or `ip6.arpa` name) naming
    /// `host`.
    pub fn ptr(mut self, addr: IpAddr, host: &str) -> Zone {
        self.records.entry(Name::from(addr)).or_default().push(RData::PTR(PTR(fqdn(host))));
        self
    }

    /// Makes `name` an alias of `target`; queries for other types follow it inside the zone.
    pub fn cname(self, name: &str, target: &str) -> Zone {
        self.add(name, RData::CNAME(CNAME(fqdn(target))))
    }

    /// Makes every query for `name` answer SERVFAIL.
    pub fn servfail(self, name: &str) -> Zone {
        self.fault(name, Fault::ServFail)
    }

    /// Makes every query for `name` answer REFUSED.
    pub fn refused(self, name: &str) -> Zone {
        self.fault(name, Fault::Refused)
    }

    /// Makes every query for `name` go unanswered, so the client times out.
    pub fn no_answer(self, name: &str) -> Zone {
        self.fault(name, Fault::NoAnswer)
    }

    fn add(mut self, name: &str, rdata: RData) -> Zone {
        self.records.entry(fqdn(name)).or_default().push(rdata);
        self
    }

    fn fault(mut self, name: &str, fault: Fault) -> Zone {
        self.faults.insert(fqdn(name), fault);
        self
    }

    /// Whether `name` owns records or has names with records below it (an empty
    /// non-terminal exists too: RFC 8020).
    fn exists(&self, name: &Name) -> bool {
        self.records.keys().chain(self.faults.keys()).any(|owner| name.zone_of(owner))
    }

    /// The response to `request`, or `None` for a query that must go unanswered.
    pub(crate) fn answer(&self, request: &Message) -> Option<Message> {
        let mut response = Message::new();
        response
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(request.op_code())
            .set_recursion_desired(request.recursion_desired())
            .set_recursion_available(true);
        response.add_queries(request.queries().iter().cloned());
        let query = match request.queries() {
            [query] if request.op_code() == OpCode::Query && request.message_type() == MessageType::Query => query,
            _ => {
                response.set_response_code(ResponseCode::FormErr);
                return Some(response);
            }
        };
        let qtype = query.query_type();
        let mut name = query.name().to_lowercase();
        for _ in 0..MAX_CNAME_CHAIN {
            match self.faults.get(&name) {
                Some(Fault::NoAnswer) => return None,
                Some(Fault::ServFail) => return Some(with_code(response, ResponseCode::ServFail)),
                Some(Fault::Refused) => return Some(with_code(response, ResponseCode::Refused)),
                None => {}
            }
            response.set_authoritative(true);
            let owned = self.records.get(&name).map(Vec::as_slice).unwrap_or_default();
            let matching: Vec<&RData> = owned.iter().filter(|r| r.record_type() == qtype).collect();
            if !matching.is_empty() {
                for rdata in matching {
                    response.add_answer(Record::from_rdata(name.clone(), self.ttl, rdata.clone()));
                }
                return Some(response);
            }
            let alias = owned.iter().find_map(|r| match r {
                RData::CNAME(CNAME(target)) if qtype != RecordType::CNAME => Some(target.to_lowercase()),
                _ => None,
            });
            match alias {
                Some(target) => {
                    response.add_answer(Record::from_rdata(
                        name.clone(),
                        self.ttl,
                        RData::CNAME(CNAME(target.clone())),
                    ));
                    name = target;
                }
                None => {
                    let code = if self.exists(&name) { ResponseCode::NoError } else { ResponseCode::NXDomain };
                    response.set_response_code(code);
                    response.add_name_server(self.soa(&name));
                    return Some(response);
                }
            }
        }
        Some(with_code(response, ResponseCode::ServFail))
    }

    /// The SOA for a negative answer: owned by the name's last two labels, with this zone's
    /// TTL as the negative-caching TTL (RFC 2308).
    fn soa(&self, name: &Name) -> Record {
        let apex = if name.num_labels() > 2 { name.trim_to(2) } else { name.clone() };
        let soa = SOA::new(fqdn("ns.test"), fqdn("hostmaster.test"), 1, 3600, 600, 86400, self.ttl);
        Record::from_rdata(apex, self.ttl, RData::SOA(soa))
    }
}

fn with_code(mut response: Message, code: ResponseCode) -> Message {
    response.set_response_code(code);
    response.take_answers();
    response
}

/// A fully qualified, lower-case name from test text.
fn fqdn(name: &str) -> Name {
    if name == "." {
        return Name::root();
    }
    let text = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    let parsed = if text.is_ascii() { Name::from_ascii(&text) } else { Name::from_utf8(&text) };
    parsed.unwrap_or_else(|e| panic!("test DNS zone: invalid name {name:?}: {e}")).to_lowercase()
}
