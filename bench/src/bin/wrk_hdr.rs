//! `wrk_hdr`: loads the latency dumps that `bench/wrk/dump.lua` writes at
//! the end of each wrk run into HdrHistogram, merges the rounds of each
//! server, prints them side by side (per round, merged, and as a markdown
//! table for README) and writes each server's merged distribution as an
//! `.hgrm` percentile-distribution file (the text format of HdrHistogram's
//! `outputPercentileDistribution`, which `plotFiles.html` plots).
//!
//! ```text
//! wrk_hdr [--hgrm-dir DIR] LABEL=DUMP...
//! ```
//!
//! Labels are grouped in the order they first appear; with exactly two, the
//! table gets a ratio column (second / first). Used by `scripts/loadtest`.
//!
//! wrk "corrects" its histogram for coordinated omission before the Lua
//! `done()` hook sees it (`stats_correct` in wrk's src/stats.c): every
//! latency of at least twice the mean interval between a connection's
//! requests also adds synthetic samples at that latency minus one, two, ...
//! intervals. The correction is deterministic, so it is undone here exactly
//! (checked: the result holds one sample per answered request). The
//! latencies reported are those measured, request by request; wrk's
//! corrected p99 and p99.9 are shown beside them, as wrk would print them.

use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Significant digits: values are exact up to 2048 µs, within 0.1% above.
const SIGFIG: u8 = 3;
/// Highest latency tracked: one hour, in µs (wrk itself stops at --timeout).
const HIGHEST_US: u64 = 3_600_000_000;
/// Percentile steps per halving of the distance to 100%, as Java's
/// HistogramLogProcessor uses.
const TICKS_PER_HALF: u32 = 5;

/// One wrk run, as `dump.lua` wrote it.
struct Round {
    duration_us: u64,
    requests: u64,
    bytes: u64,
    /// connect, read, write, timeout: wrk's "Socket errors".
    socket_errors: [u64; 4],
    /// Responses with a status above 399 (wrk's "Non-2xx or 3xx").
    status_errors: u64,
    /// Latency in µs, one sample per answered request.
    measured: Histogram<u64>,
    /// wrk's histogram, with its coordinated-omission correction.
    corrected: Histogram<u64>,
}

impl Round {
    fn requests_per_s(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (self.duration_us as f64 / 1e6) / (1024.0 * 1024.0)
    }
}

/// All rounds of one server, and their latencies merged.
struct Server {
    label: String,
    rounds: Vec<Round>,
    measured: Histogram<u64>,
    corrected: Histogram<u64>,
}

impl Server {
    fn mean_requests_per_s(&self) -> f64 {
        self.rounds.iter().map(Round::requests_per_s).sum::<f64>() / self.rounds.len() as f64
    }

    fn mean_mib_per_s(&self) -> f64 {
        self.rounds.iter().map(Round::mib_per_s).sum::<f64>() / self.rounds.len() as f64
    }

    fn requests(&self) -> u64 {
        self.rounds.iter().map(|r| r.requests).sum()
    }

    fn socket_errors(&self) -> [u64; 4] {
        let mut e = [0; 4];
        for r in &self.rounds {
            for (sum, x) in e.iter_mut().zip(r.socket_errors) {
                *sum += x;
            }
        }
        e
    }

    fn status_errors(&self) -> u64 {
        self.rounds.iter().map(|r| r.status_errors).sum()
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, SIGFIG).expect("valid histogram bounds")
}

fn histogram(entries: &[(u64, u64)]) -> Result<Histogram<u64>, String> {
    let mut h = new_histogram();
    for &(value, count) in entries {
        h.record_n(value, count)
            .map_err(|e| format!("{value} µs: {e:?}"))?;
    }
    Ok(h)
}

/// The value at 1-based `rank` of an ascending (value, count) list.
fn value_at_rank(entries: &[(u64, u64)], rank: u64) -> u64 {
    let mut total = 0;
    for &(value, count) in entries {
        total += count;
        if total >= rank {
            return value;
        }
    }
    entries.last().map_or(0, |e| e.0)
}

/// Checks `wrk_value` against wrk's percentile rule (src/stats.c
/// `stats_percentile`), allowing a rank either way for rounding: the dump
/// must be the histogram wrk computed its own numbers from.
fn matches_wrk_percentile(entries: &[(u64, u64)], p: f64, wrk_value: u64) -> bool {
    let count: u64 = entries.iter().map(|e| e.1).sum();
    let rank = ((p / 100.0) * count as f64 + 0.5).round() as u64;
    let low = value_at_rank(entries, rank.saturating_sub(1).max(1));
    let high = value_at_rank(entries, rank + 1);
    (low..=high).contains(&wrk_value)
}

/// Undoes wrk's `stats_correct(latency, interval)`, which for every value
/// `n >= 2 * interval` adds its count at `n - interval`, `n - 2 * interval`,
/// ... while above `interval`. So a value `m > interval` holds its own
/// samples plus those of every `m + k * interval`: going down from the top,
/// subtract what the same residue class above has already been found to hold.
fn uncorrect(entries: &[(u64, u64)], interval: u64) -> Result<Vec<(u64, u64)>, String> {
    let mut measured = Vec::with_capacity(entries.len());
    let mut above: HashMap<u64, u64> = HashMap::new();
    for &(m, count) in entries.iter().rev() {
        let class = above.entry(m % interval).or_insert(0);
        let own = if m > interval {
            count.checked_sub(*class).ok_or_else(|| {
                format!("{m} µs holds {count}, fewer than the {class} wrk's correction added")
            })?
        } else {
            count
        };
        *class += own;
        if own > 0 {
            measured.push((m, own));
        }
    }
    measured.reverse();
    Ok(measured)
}

/// Parses one dump: `key value` lines, `h VALUE_US COUNT` lines for the
/// histogram (ascending), and `end` (a dump without it was cut short).
fn parse_dump(text: &str) -> Result<Round, String> {
    let mut fields = HashMap::new();
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut ended = false;
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let bad = || format!("line {}: cannot parse {line:?}", n + 1);
        let mut number =
            || -> Result<u64, String> { words.next().and_then(|w| w.parse().ok()).ok_or_else(bad) };
        match key {
            k if k.starts_with('#') => {}
            "end" => ended = true,
            "h" => {
                let (value, count) = (number()?, number()?);
                if entries.last().is_some_and(|&(last, _)| last >= value) || count == 0 {
                    return Err(format!("line {}: not ascending, or a zero count", n + 1));
                }
                entries.push((value, count));
            }
            _ => {
                fields.insert(key.to_string(), number()?);
            }
        }
    }
    if !ended {
        return Err("no `end` line: the dump was cut short".into());
    }
    let get = |key: &str| {
        fields
            .get(key)
            .copied()
            .ok_or_else(|| format!("missing `{key}`"))
    };
    // The histogram must be wrk's: same number of distinct values, same
    // extremes, same percentiles.
    if get("distinct_values")? != entries.len() as u64 {
        return Err(format!(
            "{} histogram lines, but wrk reported {} distinct values",
            entries.len(),
            get("distinct_values")?
        ));
    }
    if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
        if get("latency_min_us")? != first.0 || get("latency_max_us")? != last.0 {
            return Err("histogram extremes differ from wrk's min/max".into());
        }
        for (key, p) in [("wrk_p50_us", 50.0), ("wrk_p99_us", 99.0)] {
            if !matches_wrk_percentile(&entries, p, get(key)?) {
                return Err(format!("histogram disagrees with wrk's {key}"));
            }
        }
    }
    let duration_us = get("duration_us")?;
    let requests = get("requests")?;
    let connections = get("connections")?;
    if duration_us == 0 {
        return Err("duration_us is 0".into());
    }
    if connections == 0 {
        return Err("no connection count (dump.lua reads it from $WRK_CONNECTIONS)".into());
    }
    let timeouts = get("errors_timeout")?;
    // wrk's rule (src/wrk.c, main): corrected only when every connection
    // averaged at least one request.
    let measured = match requests / connections {
        0 => entries.clone(),
        per_connection => uncorrect(&entries, duration_us / per_connection)?,
    };
    // Every answered request is one sample, except those slower than wrk's
    // --timeout, which it counts as timeouts instead.
    let samples: u64 = measured.iter().map(|e| e.1).sum();
    if samples != requests.saturating_sub(timeouts) {
        return Err(format!(
            "{samples} samples after undoing wrk's correction, for {requests} requests \
             ({timeouts} timed out): is `connections` ({connections}) wrk's -c?"
        ));
    }
    Ok(Round {
        duration_us,
        requests,
        bytes: get("bytes")?,
        socket_errors: [
            get("errors_connect")?,
            get("errors_read")?,
            get("errors_write")?,
            timeouts,
        ],
        status_errors: get("errors_status")?,
        measured: histogram(&measured)?,
        corrected: histogram(&entries)?,
    })
}

/// The percentile distribution in the format of Java HdrHistogram's
/// `outputPercentileDistribution`, values scaled by `unit_ratio` (1000: µs
/// recorded, ms written, which is what plotFiles.html assumes by default).
fn percentile_distribution(hist: &Histogram<u64>, unit_ratio: f64) -> String {
    let p = SIGFIG as usize;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in hist.iter_quantiles(TICKS_PER_HALF) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / unit_ratio;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.p$} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            // The last line has no 1/(1-Percentile): it would be infinite.
            let _ = writeln!(out, "{value:12.p$} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.p$}, StdDeviation   = {:12.p$}]",
        hist.mean() / unit_ratio,
        hist.stdev() / unit_ratio
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.p$}, Total count    = {:12}]",
        hist.max() as f64 / unit_ratio,
        hist.len()
    );
    // Sub-buckets per bucket: 2 × 10^sigfig rounded up to a power of two.
    let sub_buckets = (2 * 10u64.pow(u32::from(SIGFIG))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_buckets
    );
    out
}

/// µs as milliseconds with µs resolution.
fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// An integer with thousands separators: 123456 → "123,456".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn errors_text(e: [u64; 4]) -> String {
    format!("{}/{}/{}/{}", e[0], e[1], e[2], e[3])
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// The whole report: per round, merged side by side, then markdown.
fn report(servers: &[Server]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== per round (latency in ms)");
    let _ = writeln!(
        out,
        "{:<6} {:<10} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}  {:<9} {:>5}",
        "round",
        "server",
        "requests/s",
        "MiB/s",
        "p50",
        "p99",
        "max",
        "wrk p99",
        "sock.err",
        "≥400"
    );
    let most = servers.iter().map(|s| s.rounds.len()).max().unwrap_or(0);
    for i in 0..most {
        for s in servers {
            let Some(r) = s.rounds.get(i) else { continue };
            let _ = writeln!(
                out,
                "{:<6} {:<10} {:>12} {:>8.1} {:>8} {:>8} {:>8} {:>8}  {:<9} {:>5}",
                i + 1,
                s.label,
                thousands(r.requests_per_s()),
                r.mib_per_s(),
                ms(r.measured.value_at_quantile(0.5)),
                ms(r.measured.value_at_quantile(0.99)),
                ms(r.measured.max()),
                ms(r.corrected.value_at_quantile(0.99)),
                errors_text(r.socket_errors),
                r.status_errors
            );
        }
    }

    // Rows of the merged comparison: name, one cell per server, and the
    // numbers behind them when a ratio (second / first) means something.
    let mut rows: Vec<(String, Vec<String>, Option<Vec<f64>>)> = Vec::new();
    let n = servers.first().map_or(0, |s| s.rounds.len());
    rows.push((
        format!("requests/s (mean of {n} rounds)"),
        servers
            .iter()
            .map(|s| thousands(s.mean_requests_per_s()))
            .collect(),
        Some(servers.iter().map(Server::mean_requests_per_s).collect()),
    ));
    rows.push((
        "requests/s per round".into(),
        servers
            .iter()
            .map(|s| {
                s.rounds
                    .iter()
                    .map(|r| thousands(r.requests_per_s()))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect(),
        None,
    ));
    rows.push((
        "transfer (MiB/s)".into(),
        servers
            .iter()
            .map(|s| format!("{:.1}", s.mean_mib_per_s()))
            .collect(),
        Some(servers.iter().map(Server::mean_mib_per_s).collect()),
    ));
    for (name, q) in QUANTILES {
        let values: Vec<u64> = servers
            .iter()
            .map(|s| s.measured.value_at_quantile(q))
            .collect();
        rows.push((
            format!("latency {name} (ms)"),
            values.iter().map(|&v| ms(v)).collect(),
            Some(values.iter().map(|&v| v as f64).collect()),
        ));
    }
    let maxes: Vec<u64> = servers.iter().map(|s| s.measured.max()).collect();
    rows.push((
        "latency max (ms)".into(),
        maxes.iter().map(|&v| ms(v)).collect(),
        Some(maxes.iter().map(|&v| v as f64).collect()),
    ));
    rows.push((
        "p99 / p99.9 as wrk prints them (ms)".into(),
        servers
            .iter()
            .map(|s| {
                format!(
                    "{} / {}",
                    ms(s.corrected.value_at_quantile(0.99)),
                    ms(s.corrected.value_at_quantile(0.999))
                )
            })
            .collect(),
        None,
    ));
    rows.push((
        "requests (all rounds)".into(),
        servers.iter().map(|s| s.requests().to_string()).collect(),
        None,
    ));
    rows.push((
        "socket errors (connect/read/write/timeout)".into(),
        servers
            .iter()
            .map(|s| errors_text(s.socket_errors()))
            .collect(),
        None,
    ));
    rows.push((
        "HTTP status ≥ 400".into(),
        servers
            .iter()
            .map(|s| s.status_errors().to_string())
            .collect(),
        None,
    ));

    let with_ratio = servers.len() == 2;
    let ratio = |nums: &Option<Vec<f64>>| match nums {
        Some(v) if with_ratio && v[0] > 0.0 => format!("{:.2}×", v[1] / v[0]),
        _ => String::new(),
    };

    let _ = writeln!(out, "\n== merged over all rounds");
    let mut header = format!("{:<44}", "");
    for s in servers {
        let _ = write!(header, " {:>22}", s.label);
    }
    if with_ratio {
        let _ = write!(
            header,
            " {:>13}",
            format!("{}/{}", servers[1].label, servers[0].label)
        );
    }
    let _ = writeln!(out, "{}", header.trim_end());
    for (name, cells, nums) in &rows {
        let mut line = format!("{name:<44}");
        for c in cells {
            let _ = write!(line, " {c:>22}");
        }
        if with_ratio {
            let _ = write!(line, " {:>13}", ratio(nums));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }

    let _ = writeln!(out, "\n== markdown");
    let mut head = String::from("| |");
    let mut rule = String::from("|---|");
    for s in servers {
        let _ = write!(head, " {} |", s.label);
        rule.push_str("--:|");
    }
    if with_ratio {
        let _ = write!(head, " {} / {} |", servers[1].label, servers[0].label);
        rule.push_str("--:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for (name, cells, nums) in &rows {
        let mut line = format!("| {name} |");
        for c in cells {
            let _ = write!(line, " {c} |");
        }
        if with_ratio {
            let _ = write!(line, " {} |", ratio(nums));
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

fn run(args: &[String]) -> Result<(), String> {
    let mut hgrm_dir: Option<PathBuf> = None;
    let mut servers: Vec<Server> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--hgrm-dir" {
            hgrm_dir = Some(args.next().ok_or("--hgrm-dir needs a directory")?.into());
            continue;
        }
        let (label, path) = arg
            .split_once('=')
            .filter(|(l, p)| !l.is_empty() && !p.is_empty())
            .ok_or_else(|| format!("expected LABEL=DUMP, got {arg:?}"))?;
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
        let round = parse_dump(&text).map_err(|e| format!("{path}: {e}"))?;
        let server = match servers.iter().position(|s| s.label == label) {
            Some(i) => &mut servers[i],
            None => {
                servers.push(Server {
                    label: label.to_string(),
                    rounds: Vec::new(),
                    measured: new_histogram(),
                    corrected: new_histogram(),
                });
                servers.last_mut().expect("just pushed")
            }
        };
        server
            .measured
            .add(&round.measured)
            .and_then(|()| server.corrected.add(&round.corrected))
            .map_err(|e| format!("{path}: merging: {e:?}"))?;
        server.rounds.push(round);
    }
    if servers.is_empty() {
        return Err("usage: wrk_hdr [--hgrm-dir DIR] LABEL=DUMP...".into());
    }
    print!("{}", report(&servers));
    if let Some(dir) = hgrm_dir {
        println!();
        for s in &servers {
            for (suffix, hist, what) in [
                ("", &s.measured, "measured"),
                (".wrk-corrected", &s.corrected, "as wrk corrects it"),
            ] {
                let path = Path::new(&dir).join(format!("{}{suffix}.hgrm", s.label));
                std::fs::write(&path, percentile_distribution(hist, 1000.0))
                    .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
                println!("{} latency in ms, {what}: {}", s.label, path.display());
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wrk_hdr: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "# wrk latency dump v1\n\
        connections 1\nduration_us 2000000\nrequests 5\nbytes 5000\n\
        errors_connect 0\nerrors_read 1\nerrors_write 0\nerrors_timeout 0\nerrors_status 2\n\
        latency_min_us 100\nlatency_max_us 2000\nwrk_p50_us 100\nwrk_p99_us 2000\n\
        distinct_values 2\nh 100 4\nh 2000 1\nend\n";

    #[test]
    fn parses_a_dump() {
        let r = parse_dump(DUMP).unwrap();
        assert_eq!(r.requests, 5);
        assert_eq!(r.socket_errors, [0, 1, 0, 0]);
        assert_eq!(r.status_errors, 2);
        // Interval 2 s / 5: no latency reaches twice that, nothing to undo.
        assert_eq!(r.measured.len(), 5);
        assert_eq!(r.corrected.len(), 5);
        assert_eq!(r.measured.value_at_quantile(0.5), 100);
        assert!((r.requests_per_s() - 2.5).abs() < 1e-9);
    }

    #[test]
    fn rejects_cut_short_and_inconsistent_dumps() {
        assert!(parse_dump(DUMP.trim_end_matches("end\n")).is_err());
        assert!(parse_dump(&DUMP.replace("distinct_values 2", "distinct_values 3")).is_err());
        assert!(parse_dump(&DUMP.replace("latency_max_us 2000", "latency_max_us 1999")).is_err());
        assert!(parse_dump(&DUMP.replace("wrk_p50_us 100", "wrk_p50_us 2000")).is_err());
        assert!(parse_dump(&DUMP.replace("requests 5\n", "")).is_err());
        assert!(parse_dump(&DUMP.replace("h 100 4", "h 100 x")).is_err());
        assert!(parse_dump(&DUMP.replace("connections 1", "connections 0")).is_err());
        // More requests than samples: the counts do not add up.
        assert!(parse_dump(&DUMP.replace("requests 5", "requests 6")).is_err());
    }

    /// wrk's stats_correct, transcribed from src/stats.c, on a dense array.
    fn wrk_correct(data: &mut [u64], expected: u64) {
        let max = data.iter().rposition(|&c| c > 0).unwrap() as u64;
        for n in expected * 2..=max {
            let count = data[n as usize];
            let mut m = n - expected;
            while count > 0 && m > expected {
                data[m as usize] += count;
                m -= expected;
            }
        }
    }

    #[test]
    fn undoes_wrks_correction_exactly() {
        let mut raw = vec![0u64; 5000];
        let mut rng = 12345u64;
        for _ in 0..3000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Mostly fast, with a tail: the shape the correction inflates.
            let v = if rng >> 60 == 0 {
                300 + (rng >> 20) % 4600
            } else {
                50 + (rng >> 20) % 200
            };
            raw[v as usize] += 1;
        }
        let mut corrected = raw.clone();
        wrk_correct(&mut corrected, 97);
        assert!(corrected.iter().sum::<u64>() > raw.iter().sum::<u64>());
        let pairs = |d: &[u64]| -> Vec<(u64, u64)> {
            d.iter()
                .enumerate()
                .filter(|e| *e.1 > 0)
                .map(|(v, &c)| (v as u64, c))
                .collect()
        };
        assert_eq!(uncorrect(&pairs(&corrected), 97).unwrap(), pairs(&raw));
    }

    #[test]
    fn hgrm_has_the_java_layout() {
        let r = parse_dump(DUMP).unwrap();
        let text = percentile_distribution(&r.measured, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines[1], "");
        // Data rows: four columns, then the last at percentile 1 with three.
        let rows: Vec<Vec<&str>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows[..rows.len() - 1].iter().all(|r| r.len() == 4));
        let last = rows.last().unwrap();
        assert_eq!(last, &["2.000", "1.000000000000", "5"]);
        assert_eq!(rows[0][0], "0.100");
        assert!(text.contains("#[Max     =        2.000, Total count    =            5]"));
        assert!(text.ends_with("SubBuckets     =         2048]\n"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234.0), "1,234");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
