use std::{io::Write, net::SocketAddr, process::ExitCode, time::Duration};

use catdog_infer::{Classifier, Tta};
use catdog_serve::{serve, BatchLimits, ServeConfig};

use super::{args::ServeArgs, Failure};

pub fn run(a: ServeArgs) -> Result<ExitCode, Failure> {
    let opened = a.backend.open()?;
    let classifier = Classifier::load(&a.model, &opened.device)?;
    for warning in classifier.warnings() {
        eprintln!("warning: {warning}");
    }
    let config = ServeConfig {
        model: a.model.clone(),
        addr: SocketAddr::new(a.host, a.port),
        limits: BatchLimits {
            queue: a.queue.into(),
            max_batch: a.max_batch.into(),
            max_wait: Duration::from_millis(a.max_wait_ms.into()),
        },
        max_body_bytes: usize::from(a.max_body_mb) << 20,
        read_timeout: Duration::from_secs(a.read_timeout_s.into()),
        max_inflight_bytes: usize::from(a.max_inflight_mb) << 20,
        max_connections: a.max_connections.into(),
        tta: if a.no_tta { Tta::Off } else { Tta::Flip },
    };
    let model = a.model.display().to_string();
    serve(classifier, config, |addr| {
        // The first line of stdout names the address (tests and scripts read the port here).
        println!(
            "serving {} ({}) on http://{addr}/",
            catdog_data::printable(&model),
            opened.name
        );
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("stopped: every request in flight was answered");
    Ok(ExitCode::SUCCESS)
}
