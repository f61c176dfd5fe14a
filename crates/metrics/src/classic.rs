//! The classic Prometheus text format (version 0.0.4) from prometheus-client's OpenMetrics
//! output, for scrapers and tools that do not ask for OpenMetrics (`promtool check
//! metrics` reads the classic format).
//!
//! The two differ, for what dakiya exports, only in the metadata lines: OpenMetrics names a
//! counter family without its `_total` suffix in `# HELP`/`# TYPE` and has `# UNIT` and a
//! final `# EOF`; the classic format names the counter's sample (`x_total`) and has neither.

/// The classic text format of `openmetrics` (prometheus-client's text encoding).
pub fn to_classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take(), "");
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let suffix = if kind == "counter" && !name.ends_with("_total") { "_total" } else { "" };
            flush_help(&mut out, help.take(), suffix);
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take(), "");
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help.take(), "");
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: &str) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_units_and_eof_go() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n\
                  # HELP lat Time.\n# TYPE lat histogram\n# UNIT lat seconds\nlat_count 0\n# EOF\n";
        let classic = "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n\
                       # HELP lat Time.\n# TYPE lat histogram\nlat_count 0\n";
        assert_eq!(to_classic(om), classic);
    }
}
