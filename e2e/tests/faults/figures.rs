//! What each scenario measured, summed up as the table the README publishes.

use std::fmt::Write;

/// One scenario's figures over its runs.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The scenario's name.
    pub scenario: String,
    /// What it does, in a few words.
    pub fault: String,
    /// The goal it is held to.
    pub goal: String,
    /// Runs done.
    pub runs: usize,
    /// Seconds from each fault to the writer's first insert acknowledged by the new
    /// primary (empty where there must be no failover).
    pub failover: Vec<f64>,
    /// Acknowledged rows missing on some instance at the end.
    pub lost: usize,
    /// Moments two instances were writable and in the `-primary` Service.
    pub writable_in_service: usize,
    /// Moments two instances had `read_only=0` (one of them out of the Service).
    pub writable: usize,
    /// Seconds from each fault (or heal) until the cluster was `NoProblem` again.
    pub no_problem: Vec<f64>,
    /// Whatever else the runs showed.
    pub notes: Vec<String>,
    /// Why the scenario failed, if it did.
    pub failure: Option<String>,
    /// The goal's bound on the median failover time, in seconds (reported, not asserted:
    /// a loaded machine is slower, not wrong).
    pub median_limit: Option<f64>,
}

impl Figures {
    /// Empty figures for `scenario`.
    pub fn new(scenario: &str, fault: &str, goal: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            fault: fault.to_owned(),
            goal: goal.to_owned(),
            ..Self::default()
        }
    }

    /// Adds a note, printed at once.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  {}: {note}", self.scenario);
        self.notes.push(note);
    }
}

/// Median, p95 (nearest rank) and maximum, or `None` without samples.
pub fn spread(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some((v[v.len() / 2], rank(0.95), v[v.len() - 1]))
}

fn seconds(samples: &[f64]) -> [String; 3] {
    match spread(samples) {
        Some((median, p95, max)) => [median, p95, max].map(|s| format!("{s:.2} s")),
        None => ["–".to_owned(), "–".to_owned(), "–".to_owned()],
    }
}

/// The table of every scenario's figures, in Markdown.
pub fn table(all: &[Figures]) -> String {
    let mut out = String::from(
        "| scenario | fault | runs | failover median | p95 | max | acknowledged writes lost | \
         two writable in `-primary` (any `read_only=0`) | to `NoProblem` median / max | goal | result |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in all {
        let [median, p95, max] = seconds(&f.failover);
        let [np_median, _, np_max] = seconds(&f.no_problem);
        let slow = match (f.median_limit, spread(&f.failover)) {
            (Some(limit), Some((median, _, _))) if median >= limit => {
                Some(format!("median over {limit} s"))
            }
            _ => None,
        };
        let result = match (&f.failure, slow) {
            (Some(why), _) => format!("**failed**: {}", why.lines().next().unwrap_or_default()),
            (None, Some(slow)) => format!("checks passed; goal missed: {slow}"),
            (None, None) => "met".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {median} | {p95} | {max} | {} | {} ({}) | {np_median} / {np_max} | {} | {result} |",
            f.scenario, f.fault, f.runs, f.lost, f.writable_in_service, f.writable, f.goal
        );
    }
    out
}

/// `table` (rows of the scenarios just run) merged into `previous` (the table as it
/// was): a scenario's new row replaces its old one, the others stay, in `order`.
pub fn merge(previous: &str, table: &str, order: &[&str]) -> String {
    let rows = |t: &str| -> Vec<(String, String)> {
        t.lines()
            .skip(2)
            .filter(|l| l.starts_with("| "))
            .filter_map(|l| Some((l.split('|').nth(1)?.trim().to_owned(), l.to_owned())))
            .collect()
    };
    let (old, new) = (rows(previous), rows(table));
    let row = |name: &str| {
        let find = |rows: &[(String, String)]| rows.iter().find(|(n, _)| n == name).cloned();
        find(&new).or_else(|| find(&old)).map(|(_, line)| line)
    };
    let mut out: String = table.lines().take(2).map(|l| format!("{l}\n")).collect();
    for name in order {
        if let Some(line) = row(name) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// `text` with what lies between the two marker lines replaced by `table`.
pub fn replace_between(text: &str, begin: &str, end: &str, table: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    Some(format!("{}\n{table}{}", &text[..start], &text[stop..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_nearest_rank_p95_and_max() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        for (samples, want) in [
            (vec![], None),
            (vec![2.0], Some((2.0, 2.0, 2.0))),
            (vec![3.0, 1.0, 2.0], Some((2.0, 3.0, 3.0))),
            (ten, Some((6.0, 10.0, 10.0))),
        ] {
            assert_eq!(spread(&samples), want, "{samples:?}");
        }
    }

    #[test]
    fn new_rows_replace_old_ones_and_the_others_stay() {
        let head = "| scenario | x |\n|---|---|\n";
        let previous = format!("{head}| a | 1 |\n| b | 2 |\n| c | 3 |\n");
        let table = format!("{head}| c | 30 |\n| b | 20 |\n");
        for (order, want) in [
            (vec!["a", "b", "c"], "| a | 1 |\n| b | 20 |\n| c | 30 |\n"),
            (vec!["c", "a"], "| c | 30 |\n| a | 1 |\n"),
            (vec!["d"], ""),
        ] {
            assert_eq!(merge(&previous, &table, &order), format!("{head}{want}"));
        }
    }

    #[test]
    fn the_table_replaces_only_what_lies_between_the_markers() {
        let text = "a\n<!-- begin -->\nold\n<!-- end -->\nb\n";
        assert_eq!(
            replace_between(text, "<!-- begin -->", "<!-- end -->", "new\n").as_deref(),
            Some("a\n<!-- begin -->\nnew\n<!-- end -->\nb\n")
        );
        assert_eq!(
            replace_between("no markers", "<!-- begin -->", "<!-- end -->", ""),
            None
        );
    }
}
