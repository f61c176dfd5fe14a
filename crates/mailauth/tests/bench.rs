//! Costs, measured not asserted: `cargo test -p dakiya-mailauth --release --test bench --
//! --ignored --nocapture`. DNS answers come from the loopback test server and, after the
//! first message, from the resolver's cache.

mod common;

use std::time::{Duration, Instant};

use common::{CLIENT, keys, message, publish, signed, start};
use dakiya_mailauth::{Algorithm, AuthResult, KeyStore};
use dakiya_route::testdns::Zone;

const ROUNDS: u32 = 200;

fn per(total: Duration) -> String {
    format!("{:>8.1} µs", total.as_secs_f64() * 1e6 / f64::from(ROUNDS))
}

fn time_sign(store: &KeyStore, msg: &str) -> Duration {
    store.sign(msg.as_bytes(), "example.org").unwrap();
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(store.sign(msg.as_bytes(), "example.org").unwrap());
    }
    start.elapsed()
}

#[tokio::test]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn costs() {
    let (_d1, ed, r1) = keys("example.org", &[("ed", Algorithm::Ed25519)]);
    let (_d2, rsa, r2) = keys("example.org", &[("rsa", Algorithm::Rsa)]);
    let zone =
        Zone::new().txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all").txt("_dmarc.example.org", "v=DMARC1; p=reject");
    let (_dns, v) = start(publish(publish(zone, &r1), &r2)).await;
    // A message of a typical size: ~4 KiB of body.
    let body = "The numbers are in; see the attached summary for the details of each region.\r\n".repeat(50);
    let msg = format!("{}{body}", message("alice@example.org"));

    println!("sign (one signature, {} octets):", msg.len());
    println!("  ed25519-sha256 {}", per(time_sign(&ed, &msg)));
    println!("  rsa-sha256     {}", per(time_sign(&rsa, &msg)));

    for (name, store) in [("ed25519", &ed), ("rsa", &rsa)] {
        let received = signed(&store.sign(msg.as_bytes(), "example.org").unwrap(), &msg);
        let spf = v.check_spf(CLIENT, "mail.example.org", "alice@example.org").await;
        let warm = v.verify(received.as_bytes(), &spf).await;
        assert_eq!((warm.dkim[0].result, warm.dmarc), (AuthResult::Pass, AuthResult::Pass));

        let start = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(v.check_spf(CLIENT, "mail.example.org", "alice@example.org").await);
        }
        let spf_time = start.elapsed();
        let start = Instant::now();
        for _ in 0..ROUNDS {
            std::hint::black_box(v.verify(received.as_bytes(), &spf).await);
        }
        let verify_time = start.elapsed();
        println!("{name}-signed message, warm cache:");
        println!("  check_spf (HELO + MAIL FROM)  {}", per(spf_time));
        println!("  verify (DKIM + ARC + DMARC)   {}", per(verify_time));
        println!("  together                      {}", per(spf_time + verify_time));
    }
}
