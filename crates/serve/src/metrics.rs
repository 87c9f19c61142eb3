//! Counters for `GET /metrics`, in Prometheus' text format: requests by endpoint, errors by
//! kind, request latency and batch sizes as histograms.

use std::{sync::Mutex, time::Duration};

/// Latency buckets, seconds.
const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Batch size buckets, images.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, x: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if x <= *bound {
                *count += 1;
            }
        }
        self.sum += x;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {count}\n"));
        }
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {}\n", self.count));
        out.push_str(&format!(
            "{name}_sum {}\n{name}_count {}\n",
            self.sum, self.count
        ));
    }
}

#[derive(Debug)]
struct Counters {
    requests: Vec<(&'static str, u64)>,
    errors: Vec<(&'static str, u64)>,
    latency: Histogram,
    batches: Histogram,
}

/// The server's counters, shared by every request.
#[derive(Debug)]
pub struct Metrics(Mutex<Counters>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics(Mutex::new(Counters {
            requests: Vec::new(),
            errors: Vec::new(),
            latency: Histogram::new(&LATENCY_BOUNDS),
            batches: Histogram::new(&BATCH_BOUNDS),
        }))
    }
}

fn bump(list: &mut Vec<(&'static str, u64)>, key: &'static str) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => list.push((key, 1)),
    }
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut Counters)) {
        // A poisoned lock only means another request panicked mid-update: counts stay usable.
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c);
    }

    /// A request to `endpoint` answered after `took`.
    pub fn request(&self, endpoint: &'static str, took: Duration) {
        self.with(|c| {
            bump(&mut c.requests, endpoint);
            c.latency.observe(took.as_secs_f64());
        });
    }

    /// An error answer of `kind` (`not_an_image`, `body_too_large`, `queue_full`, ...).
    pub fn error(&self, kind: &'static str) {
        self.with(|c| bump(&mut c.errors, kind));
    }

    /// A forward pass over `images` images.
    pub fn batch(&self, images: usize) {
        self.with(|c| c.batches.observe(images as f64));
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|c| {
            out.push_str("# HELP catdog_requests_total Requests answered, by endpoint.\n");
            out.push_str("# TYPE catdog_requests_total counter\n");
            for (endpoint, n) in &c.requests {
                out.push_str(&format!(
                    "catdog_requests_total{{endpoint=\"{endpoint}\"}} {n}\n"
                ));
            }
            out.push_str("# HELP catdog_errors_total Error answers, by kind.\n");
            out.push_str("# TYPE catdog_errors_total counter\n");
            for (kind, n) in &c.errors {
                out.push_str(&format!("catdog_errors_total{{kind=\"{kind}\"}} {n}\n"));
            }
            c.latency.render(
                "catdog_request_seconds",
                "Time from a request's arrival to its answer.",
                &mut out,
            );
            c.batches
                .render("catdog_batch_images", "Images per forward pass.", &mut out);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let m = Metrics::default();
        m.batch(1);
        m.batch(3);
        m.batch(100);
        let text = m.render();
        assert!(
            text.contains("catdog_batch_images_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("catdog_batch_images_bucket{le=\"4\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("catdog_batch_images_bucket{le=\"128\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("catdog_batch_images_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("catdog_batch_images_sum 104\n"), "{text}");
    }
}
