//! The `http` listener over real sockets (docs/clients.md): autoconfig, Autodiscover, Apple
//! profiles and the MTA-STS policy chosen by Host and address, every document naming the
//! ports as bound; hostile input (malformed, oversized, slow, parallel) gets a clear 4xx or
//! 503 and the listener keeps serving. Also `dakiya dns` for an international domain
//! (configured as a U-label).

mod common;

use common::TestServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

const LISTENERS: &str = "[[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"http\"\n\
    [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"submissions\"\n\
    [[listen]]\naddress = \"127.0.0.1:0\"\nrole = \"pop3\"\n\
    [client]\nhost = \"mail.example.test\"\nimaps_port = 993\n\
    [domains.\"bücher.example\"]\nmailboxes = [\"jo\"]\n";

/// One HTTP/1.1 exchange on a new connection: status, head, body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_ascii_lowercase(), body.to_string())
}

fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String, String) {
    http(addr, format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String, String) {
    let req =
        format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    http(addr, req.as_bytes())
}

fn autodiscover_request(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\
         <Request><EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>x</AcceptableResponseSchema></Request></Autodiscover>"
    )
}

#[test]
fn documents_follow_the_host_the_address_and_the_bound_ports() {
    let s = TestServer::start(LISTENERS);
    let h = s.addr_of("http");
    let sub = s.addr_of("submissions").port();
    let pop = s.addr_of("pop3").port();
    for (host, path) in [
        ("autoconfig.example.test", "/mail/config-v1.1.xml"),
        ("example.test:80", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        ("elsewhere.test", "/mail/config-v1.1.xml?emailaddress=alice%40Example.test"),
    ] {
        let (code, head, body) = get(h, host, path);
        assert_eq!(code, 200, "{host}{path}: {body}");
        assert!(head.contains("content-type: application/xml"), "{head}");
        assert!(body.contains("<emailProvider id=\"example.test\">"), "{body}");
        assert!(body.contains(&format!("<port>{sub}</port>\n      <socketType>SSL</socketType>")), "{body}");
        assert!(body.contains(&format!("<port>{pop}</port>\n      <socketType>STARTTLS</socketType>")), "{body}");
        assert!(
            body.contains(
                "<incomingServer type=\"imap\">\n      <hostname>mail.example.test</hostname>\n      <port>993</port>"
            ),
            "{body}"
        );
    }
    let (code, _, body) = get(h, "autoconfig.xn--bcher-kva.example", "/mail/config-v1.1.xml");
    assert_eq!(code, 200);
    assert!(body.contains("<displayShortName>bücher.example</displayShortName>"), "{body}");
    // Unknown domains, hostile addresses, other paths.
    assert_eq!(get(h, "autoconfig.other.test", "/mail/config-v1.1.xml").0, 404);
    assert_eq!(get(h, "t", "/mail/config-v1.1.xml?emailaddress=a%40other.test").0, 404);
    assert_eq!(get(h, "t", "/mail/config-v1.1.xml?emailaddress=%3Cscript%3E").0, 400);
    assert_eq!(get(h, "t", "/mail/config-v1.1.xml?emailaddress=a%0a%40example.test").0, 400);
    assert_eq!(get(h, "example.test", "/etc/passwd").0, 404);
    assert_eq!(get(h, "example.test", "/.well-known/acme-challenge/nosuchtoken").0, 404);
    assert_eq!(post(h, "/mail/config-v1.1.xml", "").0, 405);

    // Autodiscover: the address in, escaped on the way out.
    let (code, head, body) = post(h, "/autodiscover/autodiscover.xml", &autodiscover_request("bob@example.test"));
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: application/xml"), "{head}");
    assert!(
        body.contains(&format!(
            "<Type>SMTP</Type>\n        <Server>mail.example.test</Server>\n        <Port>{sub}</Port>"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "<Type>POP3</Type>\n        <Server>mail.example.test</Server>\n        <Port>{pop}</Port>"
        )),
        "{body}"
    );
    assert!(body.contains("<LoginName>bob@example.test</LoginName>"), "{body}");
    let (code, _, body) = post(h, "/Autodiscover/Autodiscover.xml", &autodiscover_request("o&amp;brien@example.test"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<LoginName>o&amp;brien@example.test</LoginName>"), "{body}");
    assert_eq!(post(h, "/autodiscover/autodiscover.xml", &autodiscover_request("bob@other.test")).0, 404);

    // The Apple profile: identical on every download, the right type.
    let path = "/apple/example.test.mobileconfig?emailaddress=bob%40example.test";
    let (code, head, first) = get(h, "t", path);
    assert_eq!(code, 200, "{first}");
    assert!(head.contains("content-type: application/x-apple-aspen-config"), "{head}");
    assert!(first.contains("<string>com.apple.mail.managed</string>"), "{first}");
    assert!(first.contains("<string>EmailTypeIMAP</string>"), "{first}");
    assert_eq!(get(h, "t", path).2, first);
    assert_eq!(get(h, "t", "/apple/other.test.mobileconfig").0, 404);
}

#[test]
fn mta_sts_policy_only_for_the_policy_host_of_a_local_domain() {
    let s = TestServer::start(&format!("{LISTENERS}[mta_sts]\nmode = \"enforce\"\nmax_age = \"1d\"\n"));
    let h = s.addr_of("http");
    let (code, head, body) = get(h, "MTA-STS.example.test.", "/.well-known/mta-sts.txt");
    assert_eq!(code, 200, "{body}");
    assert!(head.contains("content-type: text/plain\r\n"), "{head}");
    assert_eq!(body, "version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\nmax_age: 86400\r\n");
    assert_eq!(get(h, "mta-sts.xn--bcher-kva.example", "/.well-known/mta-sts.txt").0, 200);
    for host in ["example.test", "mta-sts.other.test", "mta-sts.example.test.evil.test", "", "[::1]"] {
        assert_eq!(get(h, host, "/.well-known/mta-sts.txt").0, 404, "Host: {host}");
    }
    // The id dakiya dns prints is that of the served policy.
    let out = Command::new(env!("CARGO_BIN_EXE_dakiya"))
        .args(["dns", "--format", "json", "--config"])
        .arg(s.config_path())
        .arg("example.test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sts = json[0]["records"].as_array().unwrap().iter().find(|r| r["name"] == "_mta-sts.example.test").unwrap();
    let id = dakiya_publish::mtasts::policy_id(&body);
    assert_eq!(sts["value"], format!("v=STSv1; id={id}"));
}

#[test]
fn bad_autodiscover_requests_get_4xx_and_the_listener_keeps_serving() {
    let s = TestServer::start(LISTENERS);
    let h = s.addr_of("http");
    let ad = "/autodiscover/autodiscover.xml";
    assert_eq!(post(h, ad, "<Autodiscover><Request><EMailAddress>a@example.test").0, 400);
    assert_eq!(post(h, ad, "<a></b>").0, 400);
    assert_eq!(post(h, ad, "not xml at all <<<").0, 400);
    assert_eq!(post(h, ad, "<Autodiscover><Request/></Autodiscover>").0, 400);
    let entity = format!("<!DOCTYPE a [<!ENTITY x \"bob@example.test\">]>{}", autodiscover_request("&x;"));
    assert_eq!(post(h, ad, &entity).0, 400);
    assert_eq!(post(h, ad, "").0, 400);
    assert_eq!(get(h, "t", ad).0, 405);
    // Too large: declared, and chunked without a length.
    let big = format!("POST {ad} HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    assert_eq!(http(h, big.as_bytes()).0, 413);
    let chunk = "a".repeat(8000);
    let mut chunked = format!("POST {ad} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    chunked.push_str("0\r\n\r\n");
    assert_eq!(http(h, chunked.as_bytes()).0, 413);
    // Bodies elsewhere are refused unread.
    let other = "POST /mail/config-v1.1.xml HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(http(h, other.as_bytes()).0, 413);
    // A body that trickles in is cut off.
    let mut slow = TcpStream::connect(h).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    slow.write_all(format!("POST {ad} HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n<Auto").as_bytes()).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let (code, _, body) = post(h, ad, &autodiscover_request("bob@example.test"));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn parallel_idle_clients_are_refused_beyond_the_limit() {
    let s = TestServer::start(LISTENERS);
    let h = s.addr_of("http");
    let mut held = Vec::new();
    for i in 0..100 {
        let mut c = TcpStream::connect(h).unwrap();
        if i % 2 == 0 {
            c.write_all(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n<a")
                .unwrap();
        }
        held.push(c);
    }
    let mut refused = 0;
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf)
            && buf[..n].starts_with(b"HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert!(refused >= 100 - 32, "only {refused} of 100 were refused");
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(h, "mta-sts.example.test", "/.well-known/mta-sts.txt").0 != 200 {
        assert!(Instant::now() < deadline, "the listener did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reload_adds_and_removes_the_http_listener() {
    let s = TestServer::start("");
    s.rewrite_config(LISTENERS);
    s.reload().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        if let Some(a) = s
            .log()
            .lines()
            .filter(|l| l.contains("role=http"))
            .find_map(|l| l.split("address=").nth(1)?.split_whitespace().next()?.parse::<SocketAddr>().ok())
        {
            break a;
        }
        assert!(Instant::now() < deadline, "no http listener after the reload\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let (code, _, body) = get(addr, "mta-sts.example.test", "/.well-known/mta-sts.txt");
    assert_eq!(code, 200);
    assert!(body.contains("mode: testing\r\n"), "{body}");
    // A changed policy is served at once, by the same listener.
    s.rewrite_config(&format!("{LISTENERS}[mta_sts]\nmode = \"enforce\"\n"));
    s.reload().unwrap();
    let (_, _, body) = get(addr, "mta-sts.example.test", "/.well-known/mta-sts.txt");
    assert!(body.contains("mode: enforce\r\n"), "{body}");
    s.rewrite_config("");
    s.reload().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the http listener was not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dns_prints_a_labels_and_shows_u_labels() {
    let s = TestServer::start(LISTENERS);
    let out = Command::new(env!("CARGO_BIN_EXE_dakiya"))
        .args(["dns", "--config"])
        .arg(s.config_path())
        .arg("Bücher.example")
        .output()
        .unwrap();
    let zone = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(zone.starts_with("; records to publish for xn--bcher-kva.example (bücher.example)\n"), "{zone}");
    assert!(zone.contains("\nxn--bcher-kva.example.\t3600\tIN\tMX\t10 mail.example.test.\n"), "{zone}");
    assert!(
        zone.contains("\n_imaps._tcp.xn--bcher-kva.example.\t3600\tIN\tSRV\t0 1 993 mail.example.test.\n"),
        "{zone}"
    );
    assert!(zone.contains("\n_submission._tcp.xn--bcher-kva.example.\t3600\tIN\tSRV\t0 0 0 .\n"), "{zone}");
    let data_lines = zone.lines().filter(|l| !l.starts_with(';'));
    assert!(data_lines.clone().all(|l| l.is_ascii()), "{zone}");
    assert_eq!(data_lines.count(), 14, "{zone}");
    let out = Command::new(env!("CARGO_BIN_EXE_dakiya"))
        .args(["dns", "--config"])
        .arg(s.config_path())
        .arg("other.test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
