//! Progress for people: rows done of rows total, rate and ETA, derived from what a job row
//! holds (so `cdc backfill status` needs no daemon to ask).

use super::{Job, JobState};
use chrono::Utc;
use serde::Serialize;

/// One job's progress.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    #[serde(flatten)]
    pub job: Job,
    /// Rows per second since the job started.
    pub rate: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
}

impl Progress {
    pub fn of(job: Job) -> Self {
        let end = job.finished_at.unwrap_or_else(Utc::now);
        let rate = job.started_at.and_then(|s| {
            let secs = (end - s).num_milliseconds() as f64 / 1000.0;
            (secs > 0.0 && job.rows_done > 0).then(|| job.rows_done as f64 / secs)
        });
        let eta_seconds = match (job.state, rate, job.rows_total) {
            (JobState::Done | JobState::Cancelled, ..) => Some(0.0),
            (_, Some(r), Some(total)) => Some((total - job.rows_done).max(0) as f64 / r),
            _ => None,
        };
        Self { job, rate, eta_seconds }
    }

    /// Fraction done, 0..=1 (1 when finished; the total is an estimate, so it is capped).
    pub fn fraction(&self) -> f64 {
        match (self.job.state, self.job.rows_total) {
            (JobState::Done, _) => 1.0,
            (_, Some(t)) if t > 0 => (self.job.rows_done as f64 / t as f64).min(1.0),
            _ => 0.0,
        }
    }
}

/// `12m 05s`, `40s`, `-`.
pub fn duration(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 60.0 => format!("{}s", s.round() as u64),
        Some(s) if s < 3600.0 => format!("{}m {:02}s", s as u64 / 60, s as u64 % 60),
        Some(s) => format!("{}h {:02}m", s as u64 / 3600, s as u64 % 3600 / 60),
    }
}

/// The status table `cdc backfill status` prints.
pub fn table(rows: &[Progress]) -> String {
    if rows.is_empty() {
        return "no backfills\n".into();
    }
    let mut out = format!(
        "{:>5}  {:<8} {:<26} {:<12} {:<9} {:>9} {:>9} {:>6} {:>9} {:>9}\n",
        "job", "to", "table", "reason", "state", "done", "total", "%", "rows/s", "eta"
    );
    for p in rows {
        let j = &p.job;
        let table = match &j.columns {
            Some(c) => format!("{} ({})", j.table, c.join(",")),
            None => j.table.clone(),
        };
        out.push_str(&format!(
            "{:>5}  {:<8} {:<26} {:<12} {:<9} {:>9} {:>9} {:>5.1}% {:>9} {:>9}\n",
            j.id,
            j.destination.as_str(),
            table,
            j.reason.as_str(),
            j.state.as_str(),
            j.rows_done,
            j.rows_total.map_or("-".into(), |t| t.to_string()),
            100.0 * p.fraction(),
            p.rate.map_or("-".into(), |r| format!("{r:.1}")),
            duration(p.eta_seconds),
        ));
        if let Some(pred) = &j.predicate {
            out.push_str(&format!("       where {pred}\n"));
        }
    }
    out
}

/// A job's progress as metrics (rows done and expected, seconds left).
pub fn publish(job: &super::Job) {
    let p = Progress::of(job.clone());
    let table = job.table.clone();
    metrics::gauge!("sync_backfill_rows_done", "table" => table.clone()).set(job.rows_done as f64);
    metrics::gauge!("sync_backfill_rows_expected", "table" => table.clone())
        .set(job.rows_total.unwrap_or(0) as f64);
    metrics::gauge!("sync_backfill_eta_seconds", "table" => table)
        .set(p.eta_seconds.unwrap_or(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(40.2)), "40s");
        assert_eq!(duration(Some(725.0)), "12m 05s");
        assert_eq!(duration(Some(7300.0)), "2h 01m");
    }
}
