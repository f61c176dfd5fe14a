//! `dakiya queue stats`: prints the queue's shape, counted by the server
//! (`dakiya_control::queue_stats`), as a table like Postfix's `qshape` (docs/queue-cli.md).

use crate::termtext::{clean, plural};
use dakiya_control::{Counts, QueueStats};
use std::fmt::Write as _;

/// The columns after the domain: messages in all, by age, then recipients by state.
fn headings(buckets: &[u64]) -> Vec<String> {
    let label = |secs: u64| if secs.is_multiple_of(60) { format!("{}m", secs / 60) } else { format!("{secs}s") };
    let mut cols = vec!["T".to_string()];
    cols.extend(buckets.iter().map(|&b| label(b)));
    if let Some(&last) = buckets.last() {
        cols.push(format!("{}+", label(last)));
    }
    cols.extend(["RCPTS", "PENDING", "DEFERRED", "HELD"].map(String::from));
    cols
}

/// One row's numbers, in the order of [`headings`]; `ages` is padded or cut to `n_ages`.
fn cells(c: &Counts, n_ages: usize) -> Vec<u64> {
    let ages = (0..n_ages).map(|i| c.ages.get(i).copied().unwrap_or(0));
    std::iter::once(c.messages).chain(ages).chain([c.recipients, c.pending, c.deferred, c.held]).collect()
}

/// The table: a heading line, the total, one line per listed domain, and a last line when
/// `--top` left domains out. An empty queue prints one sentence instead.
pub fn format_stats(stats: &QueueStats) -> String {
    if stats.total.messages == 0 {
        return "The queue is empty.\n".into();
    }
    let heads = headings(&stats.buckets);
    let n_ages = stats.buckets.len() + usize::from(!stats.buckets.is_empty());
    let name = |domain: &str, local: bool| {
        let domain = if domain.is_empty() { "(no domain)".to_string() } else { clean(domain) };
        if local { format!("{domain} (local)") } else { domain }
    };
    let mut rows = vec![("TOTAL".to_string(), cells(&stats.total, n_ages))];
    rows.extend(stats.domains.iter().map(|d| (name(&d.domain, d.local), cells(&d.counts, n_ages))));
    let first = rows.iter().map(|(n, _)| n.chars().count()).max().unwrap_or(0).max("DOMAIN".len());
    let widths: Vec<usize> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| rows.iter().map(|(_, c)| c[i].to_string().len()).max().unwrap_or(0).max(h.len()))
        .collect();
    // Two spaces before the recipient columns set them apart from the message columns.
    let gap = |i: usize| if i == 1 + n_ages { "   " } else { " " };
    let mut out = format!("{:<first$}", "DOMAIN");
    for (i, (h, w)) in heads.iter().zip(&widths).enumerate() {
        let _ = write!(out, "{}{h:>w$}", gap(i));
    }
    out.push('\n');
    for (n, c) in &rows {
        let _ = write!(out, "{n:<first$}");
        for (i, (v, w)) in c.iter().zip(&widths).enumerate() {
            let _ = write!(out, "{}{v:>w$}", gap(i));
        }
        out.push('\n');
    }
    if stats.more_domains > 0 {
        let more = stats.more_domains as usize;
        let _ = writeln!(out, "-- {more} more {} (--top 0 lists all)", plural(more, "domain"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dakiya_control::queue_stats;
    use dakiya_control::testdata::sample;
    use dakiya_spool::RcptState;

    #[test]
    fn a_table_like_qshape() {
        // sample(): alice (local) delivered, bob@elsewhere.test deferred, carol@elsewhere.test
        // pending; 200 s old at 1_200.
        let mut held = sample();
        held.envelope.id = "0655E5A000000002".parse().unwrap();
        held.envelope.received_at = 0;
        held.held = true;
        let mut local = sample();
        local.envelope.id = "0655E5A000000003".parse().unwrap();
        local.states = vec![RcptState::Pending, RcptState::Delivered { at: 1_100 }, RcptState::Delivered { at: 1_100 }];
        let messages = [sample(), held, local];
        let want = "\
DOMAIN               T 5m 10m 20m 40m 80m 160m 320m 640m 1280m 1280m+   RCPTS PENDING DEFERRED HELD
TOTAL                3  2   0   0   1   0    0    0    0     0      0       5       2        1    2
elsewhere.test       2  1   0   0   1   0    0    0    0     0      0       4       1        1    2
example.test (local) 1  1   0   0   0   0    0    0    0     0      0       1       1        0    0
";
        assert_eq!(format_stats(&queue_stats(&messages, 1_200, None)), want);
        let cut = format_stats(&queue_stats(&messages, 1_200, Some(1)));
        assert!(cut.ends_with("\nelsewhere.test 2  1   0   0   1   0    0    0    0     0      0       4       1        1    2\n-- 1 more domain (--top 0 lists all)\n"), "{cut}");
        assert_eq!(format_stats(&queue_stats([], 1_200, None)), "The queue is empty.\n");
    }

    #[test]
    fn odd_responses_still_print() {
        // A domain with control characters, no buckets, an address without a domain.
        let mut stats = queue_stats([&sample()], 1_200, None);
        stats.buckets.clear();
        stats.domains[0].domain = "evil\u{1b}[2J.test".into();
        stats.domains.push(stats.domains[0].clone());
        stats.domains[1].domain.clear();
        let out = format_stats(&stats);
        assert!(out.starts_with("DOMAIN             T   RCPTS PENDING DEFERRED HELD\n"), "{out}");
        assert!(out.contains("\nevil\\u{1b}[2J.test 1       2       1        1    0\n"), "{out}");
        assert!(out.contains("\n(no domain)"), "{out}");
    }
}
