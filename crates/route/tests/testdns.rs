//! The test DNS server itself, asked by a plain hickory resolver (as SPF and DKIM tests in
//! other crates will) and by hand over UDP.

use std::net::{Ipv4Addr, Ipv6Addr};

use dakiya_route::testdns::{TestDns, Zone};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use tokio::net::UdpSocket;

fn resolver(dns: &TestDns) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(dns.addr, Protocol::Udp));
    config.add_name_server(NameServerConfig::new(dns.addr, Protocol::Tcp));
    let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder.build()
}

fn txt_of(lookup: &hickory_resolver::lookup::TxtLookup) -> Vec<String> {
    lookup.iter().map(|txt| txt.iter().map(|part| String::from_utf8_lossy(part).into_owned()).collect()).collect()
}

#[tokio::test]
async fn listens_on_loopback_only() {
    let dns = TestDns::start(Zone::new()).await;
    assert!(dns.addr.ip().is_loopback());
}

#[tokio::test]
async fn serves_txt_records_for_spf_and_dkim() {
    let dkim_key = format!("v=DKIM1; k=rsa; p={}", "A".repeat(600));
    let zone = Zone::new()
        .txt("example.test", "v=spf1 ip4:127.0.0.1 -all")
        .txt("sel._domainkey.example.test", &dkim_key)
        .txt_parts("split.example.test", &["v=spf1 ", "-all"]);
    let dns = TestDns::start(zone).await;
    let resolver = resolver(&dns);

    let spf = resolver.txt_lookup("example.test.").await.unwrap();
    assert_eq!(txt_of(&spf), ["v=spf1 ip4:127.0.0.1 -all"]);
    let split = resolver.txt_lookup("split.example.test.").await.unwrap();
    assert_eq!(split.iter().next().unwrap().iter().count(), 2);
    assert_eq!(txt_of(&split), ["v=spf1 -all"]);

    // Over 512 octets: truncated over UDP, then fetched over TCP.
    let dkim = resolver.txt_lookup("sel._domainkey.example.test.").await.unwrap();
    assert_eq!(dkim.iter().next().unwrap().iter().count(), 3, "split into 255-octet strings");
    assert_eq!(txt_of(&dkim), [dkim_key]);
    let asked = dns.queries().iter().filter(|q| *q == "sel._domainkey.example.test. TXT").count();
    assert_eq!(asked, 2, "once over UDP, once over TCP: {:?}", dns.queries());
}

#[tokio::test]
async fn answers_a_aaaa_and_mx() {
    let zone = Zone::new()
        .mx("example.test", 5, "mx.example.test")
        .a("mx.example.test", Ipv4Addr::new(127, 0, 0, 3))
        .aaaa("mx.example.test", Ipv6Addr::LOCALHOST);
    let dns = TestDns::start(zone).await;
    let resolver = resolver(&dns);
    let mx = resolver.mx_lookup("example.test.").await.unwrap();
    let mx: Vec<_> = mx.iter().map(|mx| (mx.preference(), mx.exchange().to_ascii())).collect();
    assert_eq!(mx, [(5, "mx.example.test.".to_string())]);
    let a = resolver.ipv4_lookup("MX.Example.Test.").await.unwrap();
    assert_eq!(a.iter().map(|a| a.0).collect::<Vec<_>>(), [Ipv4Addr::new(127, 0, 0, 3)]);
    let aaaa = resolver.ipv6_lookup("mx.example.test.").await.unwrap();
    assert_eq!(aaaa.iter().map(|a| a.0).collect::<Vec<_>>(), [Ipv6Addr::LOCALHOST]);
    assert_eq!(dns.queries()[..2], ["example.test. MX".to_string(), "mx.example.test. A".to_string()]);
}

/// Asks one question over UDP and returns the raw answer.
async fn ask_udp(dns: &TestDns, name: &str, rtype: RecordType) -> Message {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut request = Message::new();
    request.set_id(7).set_recursion_desired(true).add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    socket.send_to(&request.to_vec().unwrap(), dns.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let len = tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv(&mut buf)).await.unwrap().unwrap();
    let response = Message::from_vec(&buf[..len]).unwrap();
    assert_eq!(response.id(), 7);
    response
}

#[tokio::test]
async fn negative_answers_and_faults() {
    let zone = Zone::new()
        .a("host.sub.example.test", Ipv4Addr::new(127, 0, 0, 4))
        .servfail("broken.test")
        .refused("refused.test")
        .cname("dangling.example.test", "missing.example.test");
    let dns = TestDns::start(zone).await;

    let nodata = ask_udp(&dns, "host.sub.example.test.", RecordType::MX).await;
    assert_eq!(nodata.response_code(), ResponseCode::NoError);
    assert!(nodata.answers().is_empty());
    assert_eq!(nodata.name_servers()[0].record_type(), RecordType::SOA);
    // An empty non-terminal exists (RFC 8020): NODATA, not NXDOMAIN.
    let ent = ask_udp(&dns, "sub.example.test.", RecordType::A).await;
    assert_eq!(ent.response_code(), ResponseCode::NoError);
    let nx = ask_udp(&dns, "nothing.example.test.", RecordType::A).await;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert_eq!(nx.name_servers()[0].record_type(), RecordType::SOA);
    let alias = ask_udp(&dns, "dangling.example.test.", RecordType::A).await;
    assert_eq!(alias.response_code(), ResponseCode::NXDomain);
    assert_eq!(alias.answers()[0].record_type(), RecordType::CNAME);
    assert_eq!(ask_udp(&dns, "broken.test.", RecordType::A).await.response_code(), ResponseCode::ServFail);
    assert_eq!(ask_udp(&dns, "refused.test.", RecordType::MX).await.response_code(), ResponseCode::Refused);
}

#[tokio::test]
async fn long_udp_answers_are_truncated() {
    let dns = TestDns::start(Zone::new().txt("big.test", &"x".repeat(1000))).await;
    let response = ask_udp(&dns, "big.test.", RecordType::TXT).await;
    assert!(response.truncated());
    assert!(response.answers().is_empty());
}

#[tokio::test]
async fn no_answer_times_out() {
    let dns = TestDns::start(Zone::new().no_answer("slow.test")).await;
    let mut opts = ResolverOpts::default();
    opts.timeout = std::time::Duration::from_millis(200);
    opts.attempts = 1;
    opts.use_hosts_file = ResolveHosts::Never;
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(dns.addr, Protocol::Udp));
    let resolver =
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).with_options(opts).build();
    let started = std::time::Instant::now();
    assert!(resolver.ipv4_lookup("slow.test.").await.is_err());
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
}

#[tokio::test]
async fn zone_can_change_while_running() {
    let dns = TestDns::start(Zone::new().servfail("flaky.test")).await;
    assert_eq!(ask_udp(&dns, "flaky.test.", RecordType::A).await.response_code(), ResponseCode::ServFail);
    dns.set_zone(Zone::new().ttl(0).a("flaky.test", Ipv4Addr::new(127, 0, 0, 6)));
    let fixed = ask_udp(&dns, "flaky.test.", RecordType::A).await;
    assert_eq!(fixed.response_code(), ResponseCode::NoError);
    assert_eq!(fixed.answers()[0].ttl(), 0);
}

#[tokio::test]
async fn stops_when_dropped() {
    let dns = TestDns::start(Zone::new().a("x.test", Ipv4Addr::new(127, 0, 0, 1))).await;
    let addr = dns.addr;
    drop(dns);
    tokio::task::yield_now().await;
    // The TCP listener is gone once the aborted task has been dropped.
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(refused);
}

#[tokio::test]
async fn serves_ptr_records_for_ipv4_and_ipv6() {
    let zone = Zone::new()
        .ptr(Ipv4Addr::new(192, 0, 2, 7).into(), "host7.example.test")
        .ptr(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), "six.example.test");
    let dns = TestDns::start(zone).await;
    let resolver = resolver(&dns);
    let v4 = resolver.reverse_lookup(Ipv4Addr::new(192, 0, 2, 7).into()).await.unwrap();
    assert_eq!(v4.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["host7.example.test."]);
    let v6 = resolver.reverse_lookup(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into()).await.unwrap();
    assert_eq!(v6.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["six.example.test."]);
    assert!(resolver.reverse_lookup(Ipv4Addr::new(192, 0, 2, 8).into()).await.is_err());
}
