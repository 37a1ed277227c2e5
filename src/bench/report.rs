//! The results of `tessera bench restart` and their three renderings: a text table, JSON and an
//! SVG bar chart. Pure: no I/O, no clock.

use std::fmt::Write as _;

use serde::Serialize;

/// One way of getting from process start to the first answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `snapshot_download` into an empty cache, then Python onnxruntime.
    PythonCold,
    /// The same with the Hugging Face cache already filled.
    PythonWarm,
    /// Empty store: `tessera mount` + `tessera serve` from the mount.
    TesseraCold,
    /// The store holds the model: fresh mount, fresh `serve --no-cache`.
    TesseraWarm,
    /// As warm, with ONNX Runtime's optimized-model cache filled.
    TesseraWarmOptCache,
    /// `tessera serve --no-cache` on a plain local file: the runtime's own floor.
    Floor,
}

impl Scenario {
    /// Every scenario, in the order they are run and shown.
    pub const ALL: [Scenario; 6] = [
        Scenario::PythonCold,
        Scenario::PythonWarm,
        Scenario::TesseraCold,
        Scenario::TesseraWarm,
        Scenario::TesseraWarmOptCache,
        Scenario::Floor,
    ];

    /// Short stable identifier (JSON, logs).
    pub fn id(self) -> &'static str {
        match self {
            Scenario::PythonCold => "python-cold",
            Scenario::PythonWarm => "python-warm",
            Scenario::TesseraCold => "tessera-cold",
            Scenario::TesseraWarm => "tessera-warm",
            Scenario::TesseraWarmOptCache => "tessera-warm-optcache",
            Scenario::Floor => "floor",
        }
    }

    /// What a person reads in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::PythonCold => "1 status quo, cold (snapshot_download + onnxruntime)",
            Scenario::PythonWarm => "2 status quo, warm HF cache",
            Scenario::TesseraCold => "3 tessera, cold (empty store, mount + serve)",
            Scenario::TesseraWarm => "4 tessera, warm store (mount + serve --no-cache)",
            Scenario::TesseraWarmOptCache => "5 tessera, warm + optimized-model cache",
            Scenario::Floor => "6 floor: serve --no-cache on a local file",
        }
    }

    /// Whether the page cache is dropped before each run.
    pub fn is_cold(self) -> bool {
        matches!(self, Scenario::PythonCold | Scenario::TesseraCold)
    }
}

/// The measurements of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Which scenario.
    pub scenario: Scenario,
    /// Time from spawning the fresh process(es) to the first correct answer, one per run, ms.
    pub samples_ms: Vec<f64>,
    /// Runs whose first answer matched the reference.
    pub correct: usize,
    /// Runs attempted.
    pub runs: usize,
    /// What went wrong in failed runs.
    pub errors: Vec<String>,
    /// For cold scenarios, the content a run brought in from the hub, as left on disk (the
    /// Hugging Face cache's `hub/` blobs; the store's xorb files), largest over the runs.
    pub fetched_bytes: Option<u64>,
}

impl ScenarioResult {
    /// An empty result for `scenario`.
    pub fn new(scenario: Scenario) -> Self {
        Self { scenario, samples_ms: Vec::new(), correct: 0, runs: 0, errors: Vec::new(), fetched_bytes: None }
    }

    /// Records what one run fetched.
    pub fn add_fetched(&mut self, bytes: u64) {
        self.fetched_bytes = Some(self.fetched_bytes.unwrap_or(0).max(bytes));
    }

    /// Median, min and max of the samples (`None` without samples).
    pub fn stats(&self) -> Option<Stats> {
        Stats::of(&self.samples_ms)
    }
}

/// Median, min and max of a sample, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Median (mean of the two middle values for an even count).
    pub median_ms: f64,
    /// Smallest.
    pub min_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Stats {
    /// Of a non-empty sample.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Stats { median_ms: median, min_ms: v[0], max_ms: v[n - 1] })
    }
}

/// A whole benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// CPU, cores, memory, kernel: where it ran.
    pub machine: String,
    /// `REPO@REV:PATH` of the model answered.
    pub model: String,
    /// Size of that file.
    pub model_bytes: u64,
    /// Size of the whole revision (what `snapshot_download` fetches).
    pub repo_bytes: u64,
    /// The hub measured against.
    pub endpoint: String,
    /// Hub send-rate limit, bytes per second (`None`: unlimited loopback).
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Runs per scenario.
    pub runs: usize,
    /// Whether the page cache was dropped before the cold scenarios.
    pub page_cache_dropped: bool,
    /// Caveats worth printing under the table.
    pub notes: Vec<String>,
    /// Per scenario, in [`Scenario::ALL`] order.
    pub scenarios: Vec<ScenarioResult>,
}

/// The JSON form of one scenario (the report's fields plus derived statistics).
#[derive(Serialize)]
struct ScenarioJson<'a> {
    id: &'static str,
    label: &'static str,
    #[serde(flatten)]
    result: &'a ScenarioResult,
    #[serde(flatten)]
    stats: Option<Stats>,
    ratio_to_floor: Option<f64>,
}

impl Report {
    fn floor_median(&self) -> Option<f64> {
        self.scenarios
            .iter()
            .find(|s| s.scenario == Scenario::Floor)
            .and_then(ScenarioResult::stats)
            .map(|s| s.median_ms)
            .filter(|m| *m > 0.0)
    }

    /// Median of `r` divided by the floor's median.
    pub fn ratio_to_floor(&self, r: &ScenarioResult) -> Option<f64> {
        Some(r.stats()?.median_ms / self.floor_median()?)
    }

    /// True when every run of every scenario answered correctly.
    pub fn all_correct(&self) -> bool {
        self.scenarios.iter().all(|s| s.runs > 0 && s.correct == s.runs)
    }

    /// The human table, with a header naming the conditions and the notes below.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let bw = match self.bandwidth_bytes_per_sec {
            Some(b) => format!("hub limited to {}/s", human_bytes(b)),
            None => "hub unlimited (loopback)".to_string(),
        };
        let _ = writeln!(out, "tessera bench restart: process start -> first correct answer");
        let _ = writeln!(
            out,
            "model {} ({}; repo {}), {} runs, {bw}, page cache {}",
            self.model,
            human_bytes(self.model_bytes),
            human_bytes(self.repo_bytes),
            self.runs,
            if self.page_cache_dropped { "dropped before cold runs" } else { "NOT dropped" }
        );
        let _ = writeln!(out, "machine: {}", self.machine);
        let width = self.scenarios.iter().map(|s| s.scenario.label().len()).max().unwrap_or(8);
        let _ = writeln!(
            out,
            "{:width$}  {:>9}  {:>9}  {:>9}  {:>7}  {:>7}  {:>9}",
            "scenario", "median s", "min s", "max s", "x floor", "correct", "fetched"
        );
        for s in &self.scenarios {
            let (med, min, max) = match s.stats() {
                Some(st) => (secs(st.median_ms), secs(st.min_ms), secs(st.max_ms)),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let ratio = self.ratio_to_floor(s).map_or_else(|| "-".into(), |r| format!("{r:.2}"));
            let fetched = s.fetched_bytes.map_or_else(String::new, human_bytes);
            let _ = writeln!(
                out,
                "{:width$}  {med:>9}  {min:>9}  {max:>9}  {ratio:>7}  {:>7}  {fetched:>9}",
                s.scenario.label(),
                format!("{}/{}", s.correct, s.runs)
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for s in &self.scenarios {
            for e in &s.errors {
                let _ = writeln!(out, "error in {}: {e}", s.scenario.id());
            }
        }
        out
    }

    /// The JSON document for scripts.
    pub fn to_json(&self) -> serde_json::Value {
        let scenarios: Vec<ScenarioJson<'_>> = self
            .scenarios
            .iter()
            .map(|s| ScenarioJson {
                id: s.scenario.id(),
                label: s.scenario.label(),
                result: s,
                stats: s.stats(),
                ratio_to_floor: self.ratio_to_floor(s),
            })
            .collect();
        serde_json::json!({
            "machine": self.machine,
            "model": self.model,
            "model_bytes": self.model_bytes,
            "repo_bytes": self.repo_bytes,
            "endpoint": self.endpoint,
            "bandwidth_bytes_per_sec": self.bandwidth_bytes_per_sec,
            "runs": self.runs,
            "page_cache_dropped": self.page_cache_dropped,
            "notes": self.notes,
            "all_correct": self.all_correct(),
            "scenarios": scenarios,
        })
    }

    /// A horizontal bar chart: one bar per scenario (median), a whisker from min to max, the
    /// median and the ratio to the floor written at the bar's end.
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const LABEL_W: f64 = 400.0;
        const BAR_H: f64 = 28.0;
        const GAP: f64 = 16.0;
        const TOP: f64 = 78.0;
        let plot_w = W - LABEL_W - 150.0;
        let max = self
            .scenarios
            .iter()
            .filter_map(ScenarioResult::stats)
            .map(|s| s.max_ms)
            .fold(0.0_f64, f64::max)
            .max(1.0);
        let scale_max = nice_ceiling(max);
        let x = |ms: f64| LABEL_W + plot_w * (ms / scale_max).clamp(0.0, 1.0);
        let n = self.scenarios.len() as f64;
        let h = TOP + n * (BAR_H + GAP) + 70.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="20" y="28" font-size="17" font-weight="bold">Process start to first correct answer (median of {}, lower is better)</text>"#,
            self.runs
        );
        let bw = self
            .bandwidth_bytes_per_sec
            .map_or_else(|| "unlimited loopback hub".into(), |b| format!("hub at {}/s", human_bytes(b)));
        let _ = writeln!(
            s,
            r##"<text x="20" y="50" fill="#444">{} ({}), repo {}; {bw}; page cache {}</text>"##,
            xml(&self.model),
            human_bytes(self.model_bytes),
            human_bytes(self.repo_bytes),
            if self.page_cache_dropped { "dropped for cold runs" } else { "not dropped" }
        );
        // Grid: five ticks.
        let axis_y = TOP + n * (BAR_H + GAP);
        for i in 0..=5 {
            let ms = scale_max * f64::from(i) / 5.0;
            let gx = x(ms);
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{axis_y}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                axis_y + 18.0,
                tick(ms, scale_max)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">seconds</text>"##,
            LABEL_W + plot_w / 2.0,
            axis_y + 38.0
        );
        for (i, r) in self.scenarios.iter().enumerate() {
            let y = TOP + i as f64 * (BAR_H + GAP) + GAP / 2.0;
            let colour = match r.scenario {
                Scenario::PythonCold | Scenario::PythonWarm => "#d9822b",
                Scenario::Floor => "#7a7a7a",
                _ => "#2b6cb0",
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LABEL_W - 10.0,
                y + BAR_H / 2.0 + 5.0,
                xml(r.scenario.label())
            );
            let Some(st) = r.stats() else {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#b00">no correct answer</text>"##,
                    LABEL_W + 4.0,
                    y + BAR_H / 2.0 + 5.0
                );
                continue;
            };
            let bw = (x(st.median_ms) - LABEL_W).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LABEL_W}" y="{y:.1}" width="{bw:.1}" height="{BAR_H}" fill="{colour}"/>"#
            );
            let cy = y + BAR_H / 2.0;
            let (x0, x1) = (x(st.min_ms), x(st.max_ms));
            let _ = writeln!(
                s,
                r##"<path d="M{x0:.1} {cy:.1}H{x1:.1}M{x0:.1} {:.1}V{:.1}M{x1:.1} {:.1}V{:.1}" stroke="#111" stroke-width="1.5" fill="none"/>"##,
                cy - 6.0,
                cy + 6.0,
                cy - 6.0,
                cy + 6.0
            );
            let ratio = self.ratio_to_floor(r).map_or_else(String::new, |q| format!("  ({q:.1}x floor)"));
            let wrong = if r.correct < r.runs { format!("  {} of {} wrong/failed", r.runs - r.correct, r.runs) } else { String::new() };
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#111">{} s{ratio}{wrong}</text>"##,
                x1.max(x(st.median_ms)) + 8.0,
                cy + 5.0,
                secs(st.median_ms)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="20" y="{:.1}" fill="#666" font-size="11">{}</text>"##,
            h - 10.0,
            xml(&format!("machine: {}", self.machine))
        );
        s.push_str("</svg>\n");
        s
    }
}

fn secs(ms: f64) -> String {
    if ms >= 10_000.0 { format!("{:.1}", ms / 1e3) } else { format!("{:.2}", ms / 1e3) }
}

/// An axis label in seconds with as many decimals as the scale needs, the same on every tick.
fn tick(ms: f64, scale_max_ms: f64) -> String {
    let digits = if scale_max_ms >= 10_000.0 { 0 } else if scale_max_ms >= 1_000.0 { 1 } else { 2 };
    format!("{:.*}", digits, ms / 1e3)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

/// `1.5 GB`, `23.0 MB`, `900 B` (decimal units, as network rates are given).
pub fn human_bytes(b: u64) -> String {
    let f = b as f64;
    if f >= 1e9 {
        format!("{:.2} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{b} B")
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Parses a rate: `100MB/s`, `100M`, `1.5G`, `800k`, `12500000` (decimal units, bytes per
/// second; a trailing `B` and `/s` are optional; `Mbit/s` is bits).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix("/s").unwrap_or(&lower);
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (num, unit) = body.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad rate {t:?} (try 100MB/s)"))?;
    let (mult, rest) = match unit.chars().next() {
        Some('k') => (1e3, &unit[1..]),
        Some('m') => (1e6, &unit[1..]),
        Some('g') => (1e9, &unit[1..]),
        _ => (1.0, unit),
    };
    let bits = match rest {
        "" | "b" => false,
        "bit" => true,
        _ => return Err(format!("bad rate unit in {t:?} (use k, M or G, B or bit, e.g. 100MB/s)")),
    };
    let v = n * mult / if bits { 8.0 } else { 1.0 };
    if !(1.0..1e15).contains(&v) {
        return Err(format!("rate {t:?} out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut scenarios = Vec::new();
        for (i, sc) in Scenario::ALL.iter().enumerate() {
            let mut r = ScenarioResult::new(*sc);
            r.samples_ms = vec![1000.0 * (6 - i) as f64, 900.0 * (6 - i) as f64, 1200.0 * (6 - i) as f64];
            r.runs = 3;
            r.correct = 3;
            scenarios.push(r);
        }
        Report {
            machine: "test box".into(),
            model: "a/b@main:m.onnx".into(),
            model_bytes: 23_000_000,
            repo_bytes: 380_000_000,
            endpoint: "http://127.0.0.1:1".into(),
            bandwidth_bytes_per_sec: Some(100_000_000),
            runs: 3,
            page_cache_dropped: true,
            notes: vec![],
            scenarios,
        }
    }

    #[test]
    fn stats_and_ratios() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]), Some(Stats { median_ms: 2.0, min_ms: 1.0, max_ms: 3.0 }));
        assert_eq!(Stats::of(&[4.0, 1.0]).unwrap().median_ms, 2.5);
        assert_eq!(Stats::of(&[]), None);
        let r = report();
        assert_eq!(r.ratio_to_floor(&r.scenarios[0]), Some(6.0));
        assert!(r.all_correct());
    }

    #[test]
    fn renderings_name_every_scenario() {
        let r = report();
        let table = r.table();
        let svg = r.svg();
        let json = r.to_json();
        for sc in Scenario::ALL {
            assert!(table.contains(sc.label()), "{table}");
            assert!(svg.contains(&xml(sc.label())));
        }
        assert_eq!(json["scenarios"].as_array().unwrap().len(), 6);
        assert_eq!(json["scenarios"][0]["id"], "python-cold");
        assert_eq!(json["scenarios"][0]["median_ms"], 6000.0);
        assert_eq!(json["scenarios"][5]["ratio_to_floor"], 1.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100MB/s"), Ok(100_000_000));
        assert_eq!(parse_rate("100M"), Ok(100_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("800k"), Ok(800_000));
        assert_eq!(parse_rate("12500000"), Ok(12_500_000));
        assert_eq!(parse_rate("800Mbit/s"), Ok(100_000_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("10x").is_err());
    }
}
